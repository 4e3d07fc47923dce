// Our softmax and ReLU kernels against cuDNN, an implementation written by
// someone else. cuDNN is loaded at run time with dlopen ($MLP_CUDNN_LIB, else
// libcudnn.so.9 on the library path), so this executable needs only cudnn.h
// to build and still runs, skipping these tests with the reason, where the
// library is missing. cuDNN runs on the legacy default stream; the tests
// synchronise the device between its work and the backend's.
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "cuda_testing.h"

namespace mlp {
namespace {

using cuda_testing::all_close;
using cuda_testing::CudaTest;
using testing::DeviceVec;
using testing::random_floats;

// The cuDNN entry points the tests use, resolved with dlsym.
struct Cudnn {
  decltype(&cudnnGetErrorString) error_string = nullptr;
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnDestroy) destroy = nullptr;
  decltype(&cudnnCreateTensorDescriptor) create_tensor = nullptr;
  decltype(&cudnnSetTensor4dDescriptor) set_tensor_4d = nullptr;
  decltype(&cudnnDestroyTensorDescriptor) destroy_tensor = nullptr;
  decltype(&cudnnSoftmaxForward) softmax_forward = nullptr;
  decltype(&cudnnAddTensor) add_tensor = nullptr;
  decltype(&cudnnCreateActivationDescriptor) create_activation = nullptr;
  decltype(&cudnnSetActivationDescriptor) set_activation = nullptr;
  decltype(&cudnnDestroyActivationDescriptor) destroy_activation = nullptr;
  decltype(&cudnnActivationForward) activation_forward = nullptr;
  decltype(&cudnnActivationBackward) activation_backward = nullptr;
  std::string missing;  // why it could not be loaded; empty when usable
  cudnnHandle_t handle = nullptr;
};

template <class F>
void resolve(void* lib, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn && missing.empty()) missing = std::string("symbol ") + name + " not found";
}

Cudnn& cudnn() {
  static Cudnn loaded = [] {
    Cudnn c;
    const char* env = std::getenv("MLP_CUDNN_LIB");
    const char* name = env && *env ? env : "libcudnn.so.9";
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      c.missing = std::string("cannot load ") + name + ": " + (e ? e : "?") +
                  " (set MLP_CUDNN_LIB or LD_LIBRARY_PATH)";
      return c;
    }
    resolve(lib, "cudnnGetErrorString", c.error_string, c.missing);
    resolve(lib, "cudnnCreate", c.create, c.missing);
    resolve(lib, "cudnnDestroy", c.destroy, c.missing);
    resolve(lib, "cudnnCreateTensorDescriptor", c.create_tensor, c.missing);
    resolve(lib, "cudnnSetTensor4dDescriptor", c.set_tensor_4d, c.missing);
    resolve(lib, "cudnnDestroyTensorDescriptor", c.destroy_tensor, c.missing);
    resolve(lib, "cudnnSoftmaxForward", c.softmax_forward, c.missing);
    resolve(lib, "cudnnAddTensor", c.add_tensor, c.missing);
    resolve(lib, "cudnnCreateActivationDescriptor", c.create_activation, c.missing);
    resolve(lib, "cudnnSetActivationDescriptor", c.set_activation, c.missing);
    resolve(lib, "cudnnDestroyActivationDescriptor", c.destroy_activation, c.missing);
    resolve(lib, "cudnnActivationForward", c.activation_forward, c.missing);
    resolve(lib, "cudnnActivationBackward", c.activation_backward, c.missing);
    if (c.missing.empty() && c.create(&c.handle) != CUDNN_STATUS_SUCCESS)
      c.missing = "cudnnCreate failed";
    return c;  // the library stays loaded for the process
  }();
  return loaded;
}

#define CUDNN_OK(stmt)                                                                  \
  do {                                                                                  \
    const cudnnStatus_t st_ = (stmt);                                                   \
    ASSERT_EQ(st_, CUDNN_STATUS_SUCCESS) << #stmt << ": " << cudnn().error_string(st_); \
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
    EXPECT_EQ(cudnn().create_tensor(&d), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnn().set_tensor_4d(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, static_cast<int>(n),
                                    static_cast<int>(c), 1, 1),
              CUDNN_STATUS_SUCCESS);
    descs_.push_back(d);
    return d;
  }
  void TearDown() override {
    for (auto d : descs_) cudnn().destroy_tensor(d);
  }
  std::vector<cudnnTensorDescriptor_t> descs_;
};

struct Shape {
  int64_t rows, cols;
};
const std::vector<Shape> kShapes = {{7, 13}, {10, 5}, {100, 10}, {100, 500}, {333, 37}};

// softmax = dlogits * rows + onehot, recovered from our fused kernel's output.
// Tolerance: atol 2e-6, rtol 1e-5 (a few ulp of expf plus the reconstruction).
// The loss sum is checked against cuDNN's log-softmax: atol 1e-5 * rows, rtol 1e-5.
TEST_F(CudnnTest, SoftmaxMatchesCudnn) {
  for (const Shape& s : kShapes) {
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
    CUDNN_OK(cudnn().softmax_forward(cudnn().handle, CUDNN_SOFTMAX_ACCURATE,
                                     CUDNN_SOFTMAX_MODE_INSTANCE, &one, desc, dx.get(), &zero, desc,
                                     dsoft.get()));
    CUDNN_OK(cudnn().softmax_forward(cudnn().handle, CUDNN_SOFTMAX_LOG, CUDNN_SOFTMAX_MODE_INSTANCE,
                                     &one, desc, dx.get(), &zero, desc, dlog.get()));
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
  CUDNN_OK(cudnn().create_activation(&act));
  CUDNN_OK(cudnn().set_activation(act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  for (const Shape& s : kShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const auto z = random_floats(n, 52);
    const auto bias = random_floats(static_cast<std::size_t>(s.cols), 53);
    DeviceVec<float> dz(gpu(), z), dref(gpu(), z), db(gpu(), bias);
    cudnnTensorDescriptor_t zdesc = tensor(s.rows, s.cols), bdesc = tensor(1, s.cols);
    const float one = 1.0f, zero = 0.0f;
    gpu().synchronize();
    CUDNN_OK(cudnn().add_tensor(cudnn().handle, &one, bdesc, db.get(), &one, zdesc, dref.get()));
    CUDNN_OK(cudnn().activation_forward(cudnn().handle, act, &one, zdesc, dref.get(), &zero, zdesc,
                                        dref.get()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gpu().bias_relu_forward({dz.get(), s.rows, s.cols}, db.get());
    EXPECT_TRUE(all_close(dz.download(), dref.download(), 0.0, 0.0)) << s.rows << "x" << s.cols;
  }
  cudnn().destroy_activation(act);
}

// ReLU backward: dx = dy where y > 0, else 0. cuDNN is given y for both y and
// x (ReLU's output is positive exactly where its input was). Exact.
TEST_F(CudnnTest, ReluBackwardMatchesCudnn) {
  cudnnActivationDescriptor_t act = nullptr;
  CUDNN_OK(cudnn().create_activation(&act));
  CUDNN_OK(cudnn().set_activation(act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
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
    CUDNN_OK(cudnn().activation_backward(cudnn().handle, act, &one, desc, dyv.get(), desc,
                                         ddy.get(), desc, dyv.get(), &zero, desc, dref.get()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gpu().relu_backward({dours.get(), s.rows, s.cols}, {dyv.get(), s.rows, s.cols});
    EXPECT_TRUE(all_close(dours.download(), dref.download(), 0.0, 0.0)) << s.rows << "x" << s.cols;
  }
  cudnn().destroy_activation(act);
}

}  // namespace
}  // namespace mlp
