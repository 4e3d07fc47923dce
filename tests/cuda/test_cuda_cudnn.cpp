// Our softmax and ReLU kernels against cuDNN, an implementation written by
// someone else. cuDNN is loaded at run time (src/bench/micro/cudnn_loader.h:
// $MLP_CUDNN_LIB, else libcudnn.so.9 on the library path), so this executable
// needs only cudnn.h to build and still runs, skipping these tests with the
// reason, where the library is missing. cuDNN runs on the legacy default
// stream; the tests synchronise the device between its work and the backend's.
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "bench/micro/cudnn_loader.h"  // defines: cudnn_loader::cudnn, the dlopen'd cuDNN
#include "cuda_testing.h"

namespace mlp {
namespace {

using cuda_testing::all_close;
using cuda_testing::CudaTest;
using testing::DeviceVec;
using testing::random_floats;

using cudnn_loader::CudnnApi;

// The loaded cuDNN and one handle for the process; `missing` says why not.
struct Cudnn {
  const CudnnApi* api = nullptr;
  cudnnHandle_t handle = nullptr;
  std::string missing;
  const CudnnApi* operator->() const { return api; }
};

Cudnn& cudnn() {
  static Cudnn loaded = [] {
    Cudnn c;
    c.api = &cudnn_loader::cudnn();
    c.missing = c.api->error;
    if (c.missing.empty() && c.api->cudnnCreate(&c.handle) != CUDNN_STATUS_SUCCESS)
      c.missing = "cudnnCreate failed";
    return c;  // the handle lives as long as the process
  }();
  return loaded;
}

#define CUDNN_OK(stmt)                                                                          \
  do {                                                                                          \
    const cudnnStatus_t st_ = (stmt);                                                           \
    ASSERT_EQ(st_, CUDNN_STATUS_SUCCESS) << #stmt << ": " << cudnn()->cudnnGetErrorString(st_); \
  } while (0)

class CudnnTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    if (!cudnn().missing.empty()) GTEST_SKIP() << "cuDNN unavailable: " << cudnn().missing;
  }
  // (rows, cols) as NCHW (rows, cols, 1, 1): softmax over C per image.
  cudnnTensorDescriptor_t tensor(int64_t n, int64_t c) {
    cudnnTensorDescriptor_t d = nullptr;
    EXPECT_EQ(cudnn()->cudnnCreateTensorDescriptor(&d), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnn()->cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                  static_cast<int>(n), static_cast<int>(c), 1, 1),
              CUDNN_STATUS_SUCCESS);
    descs_.push_back(d);
    return d;
  }
  void TearDown() override {
    for (auto d : descs_) cudnn()->cudnnDestroyTensorDescriptor(d);
  }
  std::vector<cudnnTensorDescriptor_t> descs_;
};

struct Shape {
  int64_t rows, cols;
};
// Element-wise ops: odd shapes and the network's hidden activations.
const std::vector<Shape> kShapes = {{7, 13}, {10, 5}, {100, 10}, {100, 500}, {333, 37}};
// softmax_xent: at most 256 classes (labels are uint8; Backend refuses more).
const std::vector<Shape> kSoftmaxShapes = {{7, 13},   {10, 5},    {1, 1},
                                           {100, 10}, {100, 256}, {333, 37}};

// Runs everywhere (no GPU, no cuDNN needed): the CPU backend shares the
// Backend's shape checks, so a shape it refuses would make the cuDNN softmax
// test throw on every machine with a GPU and cuDNN.
TEST(CudnnShapes, SoftmaxShapesAreOnesTheBackendAccepts) {
  Backend& cpu = cuda_testing::cpu_backend();
  for (const Shape& s : kSoftmaxShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    DeviceVec<float> x(cpu, random_floats(n, 51)), d(cpu, std::vector<float>(n, 0.0f));
    DeviceVec<uint8_t> labels(cpu, std::vector<uint8_t>(static_cast<std::size_t>(s.rows), 0));
    DeviceVec<double> m(cpu, {0.0, 0.0});
    EXPECT_NO_THROW(cpu.softmax_xent({x.get(), s.rows, s.cols}, labels.get(), d.get(), m.get()))
        << s.rows << "x" << s.cols;
  }
}

// softmax = dlogits * rows + onehot, recovered from our fused kernel's output.
// Tolerance: atol 2e-6, rtol 1e-5 (a few ulp of expf plus the reconstruction).
// The loss sum is checked against cuDNN's log-softmax: atol 1e-5 * rows, rtol 1e-5.
TEST_F(CudnnTest, SoftmaxMatchesCudnn) {
  for (const Shape& s : kSoftmaxShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const auto logits = random_floats(n, 51, 4.0);
    std::vector<uint8_t> labels(static_cast<std::size_t>(s.rows));
    for (std::size_t r = 0; r < labels.size(); ++r)
      labels[r] = static_cast<uint8_t>((r * 7 + 3) % static_cast<std::size_t>(s.cols));
    DeviceVec<float> dx(gpu(), logits), dsoft(gpu(), std::vector<float>(n, 0.0f)),
        dlog(gpu(), std::vector<float>(n, 0.0f)), dd(gpu(), std::vector<float>(n, 0.0f));
    DeviceVec<uint8_t> dlab(gpu(), labels);
    DeviceVec<double> dm(gpu(), {0.0, 0.0});
    cudnnTensorDescriptor_t desc = tensor(s.rows, s.cols);
    const float one = 1.0f, zero = 0.0f;
    gpu().synchronize();
    CUDNN_OK(cudnn()->cudnnSoftmaxForward(cudnn().handle, CUDNN_SOFTMAX_ACCURATE,
                                          CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, dx.get(), &zero,
                                          desc, dsoft.get()));
    CUDNN_OK(cudnn()->cudnnSoftmaxForward(cudnn().handle, CUDNN_SOFTMAX_LOG,
                                          CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, dx.get(), &zero,
                                          desc, dlog.get()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gpu().softmax_xent({dx.get(), s.rows, s.cols}, dlab.get(), dd.get(), dm.get());

    const auto d = dd.download(), want = dsoft.download(), logp = dlog.download();
    std::vector<float> ours(n);
    double want_loss = 0.0;
    for (int64_t r = 0; r < s.rows; ++r) {
      want_loss -= logp[r * s.cols + labels[r]];
      for (int64_t c = 0; c < s.cols; ++c)
        ours[r * s.cols + c] =
            d[r * s.cols + c] * static_cast<float>(s.rows) + (c == labels[r] ? 1.0f : 0.0f);
    }
    EXPECT_TRUE(all_close(ours, want, 2e-6, 1e-5)) << s.rows << "x" << s.cols;
    EXPECT_TRUE(testing::near(dm.download()[kMetricLossSum], want_loss,
                              1e-5 * static_cast<double>(s.rows), 1e-5))
        << s.rows << "x" << s.cols;
  }
}

// cuDNN's add-tensor (bias broadcast) then ReLU, against our fused kernel.
// Both compute one float add and one max per element: exact.
TEST_F(CudnnTest, BiasReluForwardMatchesCudnn) {
  cudnnActivationDescriptor_t act = nullptr;
  CUDNN_OK(cudnn()->cudnnCreateActivationDescriptor(&act));
  CUDNN_OK(cudnn()->cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU,
                                                 CUDNN_NOT_PROPAGATE_NAN, 0.0));
  for (const Shape& s : kShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const auto z = random_floats(n, 52);
    const auto bias = random_floats(static_cast<std::size_t>(s.cols), 53);
    DeviceVec<float> dz(gpu(), z), dref(gpu(), z), db(gpu(), bias);
    cudnnTensorDescriptor_t zdesc = tensor(s.rows, s.cols), bdesc = tensor(1, s.cols);
    const float one = 1.0f, zero = 0.0f;
    gpu().synchronize();
    CUDNN_OK(
        cudnn()->cudnnAddTensor(cudnn().handle, &one, bdesc, db.get(), &one, zdesc, dref.get()));
    CUDNN_OK(cudnn()->cudnnActivationForward(cudnn().handle, act, &one, zdesc, dref.get(), &zero,
                                             zdesc, dref.get()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gpu().bias_relu_forward({dz.get(), s.rows, s.cols}, db.get());
    EXPECT_TRUE(all_close(dz.download(), dref.download(), 0.0, 0.0)) << s.rows << "x" << s.cols;
  }
  cudnn()->cudnnDestroyActivationDescriptor(act);
}

// ReLU backward: dx = dy where y > 0, else 0. cuDNN is given y for both y and
// x (ReLU's output is positive exactly where its input was). Exact.
TEST_F(CudnnTest, ReluBackwardMatchesCudnn) {
  cudnnActivationDescriptor_t act = nullptr;
  CUDNN_OK(cudnn()->cudnnCreateActivationDescriptor(&act));
  CUDNN_OK(cudnn()->cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU,
                                                 CUDNN_NOT_PROPAGATE_NAN, 0.0));
  for (const Shape& s : kShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    auto y = random_floats(n, 54);
    for (auto& v : y) v = v > 0.0f ? v : 0.0f;
    const auto dy = random_floats(n, 55);
    DeviceVec<float> dyv(gpu(), y), ddy(gpu(), dy), dref(gpu(), std::vector<float>(n, 9.0f)),
        dours(gpu(), dy);
    cudnnTensorDescriptor_t desc = tensor(s.rows, s.cols);
    const float one = 1.0f, zero = 0.0f;
    gpu().synchronize();
    CUDNN_OK(cudnn()->cudnnActivationBackward(cudnn().handle, act, &one, desc, dyv.get(), desc,
                                              ddy.get(), desc, dyv.get(), &zero, desc, dref.get()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gpu().relu_backward({dours.get(), s.rows, s.cols}, {dyv.get(), s.rows, s.cols});
    EXPECT_TRUE(all_close(dours.download(), dref.download(), 0.0, 0.0)) << s.rows << "x" << s.cols;
  }
  cudnn()->cudnnDestroyActivationDescriptor(act);
}

}  // namespace
}  // namespace mlp
