// The CUDA backend's plumbing: availability and `info` text (these run on
// every machine, with or without a GPU), the error macros' messages, and on a
// GPU: zeroed allocations, the out-of-memory message, async uploads with
// fences waited on from another thread, timestamps, and graph capture errors.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "cuda/cublas_check.h"
#include "cuda_testing.h"

namespace mlp {
namespace {

using cuda_testing::CudaTest;
using testing::DeviceVec;
using testing::throws_error;

// Runs everywhere: either a device is usable and the backend says so, or
// make_cuda_backend fails with exit code 6 and the same plain reason.
TEST(CudaAvailability, ReasonReportAndFactoryAgree) {
  EXPECT_TRUE(cuda_compiled());
  const std::string reason = cuda_unavailable_reason();
  const std::string report = cuda_report();
  EXPECT_NE(report.find("cuBLAS"), std::string::npos) << report;
  EXPECT_NE(report.find("cuDNN"), std::string::npos) << report;
  if (reason.empty()) {
    EXPECT_NE(report.find("compute capability"), std::string::npos) << report;
    auto be = make_cuda_backend({});
    EXPECT_EQ(be->kind(), BackendKind::kCuda);
    EXPECT_NE(be->describe().find("cuda: "), std::string::npos) << be->describe();
    BackendOptions auto_opt;  // --device auto picks CUDA when it is usable
    EXPECT_EQ(make_backend(auto_opt)->kind(), BackendKind::kCuda);
  } else {
    std::printf("[ info ] no CUDA device: %s\n", reason.c_str());
    EXPECT_NE(report.find("devices      none: " + reason), std::string::npos) << report;
    EXPECT_TRUE(throws_error([] { make_cuda_backend({}); }, ExitCode::kDevice,
                             {"--device cuda: ", reason}));
    BackendOptions auto_opt;  // --device auto falls back to the CPU
    EXPECT_EQ(make_backend(auto_opt)->kind(), BackendKind::kCpu);
  }
}

TEST(CudaErrors, MacrosNameStatementFileLineAndMessage) {
  EXPECT_TRUE(
      throws_error([] { MLP_CUDA_CHECK(cudaErrorMemoryAllocation); }, ExitCode::kDevice,
                   {"CUDA error on device ", " at tests/cuda/test_cuda_backend.cpp:",
                    "cudaErrorMemoryAllocation failed: cudaErrorMemoryAllocation: out of memory"}));
  EXPECT_TRUE(throws_error([] { MLP_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); }, ExitCode::kDevice,
                           {"cuBLAS error on device ", " at tests/cuda/test_cuda_backend.cpp:",
                            "CUBLAS_STATUS_INVALID_VALUE failed: CUBLAS_STATUS_INVALID_VALUE"}));
  EXPECT_NO_THROW(MLP_CUDA_CHECK(cudaSuccess));
}

// The source directory is stripped wherever the checkout lives: a checkout
// under ~/src/ used to be cut at its first "/src/".
TEST(CudaErrors, MessagesNameFilesRelativeToTheSourceTree) {
  using cuda::project_path;
  EXPECT_STREQ(project_path("/home/me/src/mnist-mlp/src/cuda/x.cpp", "/home/me/src/mnist-mlp"),
               "src/cuda/x.cpp");
  EXPECT_STREQ(project_path("/home/me/src/mnist-mlp/kernels/adam.cu", "/home/me/src/mnist-mlp"),
               "kernels/adam.cu");
  EXPECT_STREQ(project_path("../tests/cuda/t.cpp", "/home/me/src/mnist-mlp"), "tests/cuda/t.cpp");
  EXPECT_STREQ(project_path("/elsewhere/f.cpp", "/home/me/src/mnist-mlp"), "/elsewhere/f.cpp");
  EXPECT_STREQ(project_path("/home/me/src/mnist-mlp-old/f.cpp", "/home/me/src/mnist-mlp"),
               "/home/me/src/mnist-mlp-old/f.cpp")
      << "a sibling directory sharing the prefix is not the source tree";
}

TEST_F(CudaTest, AllocIsZeroFilled) {
  Buffer b = gpu().alloc(12345);
  std::vector<uint8_t> host(12345, 0xff);
  gpu().download(host.data(), b.data(), host.size());
  EXPECT_EQ(host, std::vector<uint8_t>(12345, 0));
}

TEST_F(CudaTest, OutOfMemorySaysNeededAndFree) {
  const std::size_t huge = std::size_t{1} << 52;  // 4 PiB
  EXPECT_TRUE(
      throws_error([&] { gpu().alloc(huge); }, ExitCode::kDevice,
                   {"out of GPU memory", "needed " + std::to_string(huge) + " bytes", "are free"}));
  Buffer ok = gpu().alloc(1024);  // the backend still works afterwards
  EXPECT_TRUE(ok);
}

TEST_F(CudaTest, UploadAsyncFenceCanBeWaitedOnFromAnotherThread) {
  const std::size_t n = 1 << 20;
  Buffer staging = gpu().alloc_host(n);
  Buffer dst = gpu().alloc(n);
  for (std::size_t i = 0; i < n; ++i) staging.as<uint8_t>()[i] = static_cast<uint8_t>(i * 7);
  const uint64_t after = gpu().record_compute_event();
  const uint64_t fence = gpu().upload_async(dst.data(), staging.data(), n, after);
  EXPECT_GT(fence, 0u);
  std::thread loader([&] { gpu().wait_fence(fence); });  // as BatchStream's loader does
  loader.join();
  std::vector<uint8_t> back(n);
  gpu().download(back.data(), dst.data(), n);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), staging.as<uint8_t>()));
  EXPECT_TRUE(throws_error([&] { gpu().upload_async(dst.data(), staging.data(), n, after + 1000); },
                           ExitCode::kFailure, {"never recorded"}));
}

TEST_F(CudaTest, TimestampsMeasureQueuedWork) {
  DeviceVec<float> a(gpu(), std::vector<float>(1 << 20, 1.0f));
  const uint64_t t0 = gpu().record_timestamp();
  for (int i = 0; i < 20; ++i)  // TODO(first flight): a kernel of known minimum duration
    gpu().upload(a.get(), std::vector<float>(1 << 20, 2.0f).data(), (1 << 20) * sizeof(float));
  const uint64_t t1 = gpu().record_timestamp();
  const double ms = gpu().elapsed_ms(t0, t1);
  EXPECT_TRUE(std::isfinite(ms) && ms >= 0.0) << ms;
  EXPECT_TRUE(throws_error([&] { gpu().elapsed_ms(t0, t1 + 5); }, ExitCode::kFailure,
                           {"not among the last"}));
}

TEST_F(CudaTest, CaptureOfAHostSyncFailsCleanly) {
  DeviceVec<float> a(gpu(), {1.0f, 2.0f});
  float host[2] = {0, 0};
  EXPECT_TRUE(throws_error([&] { gpu().capture([&] { gpu().download(host, a.get(), 8); }); },
                           ExitCode::kDevice, {"CUDA error"}));
  EXPECT_EQ(a.download(), (std::vector<float>{1.0f, 2.0f})) << "backend unusable after capture";
}

}  // namespace
}  // namespace mlp
