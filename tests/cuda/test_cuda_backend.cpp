// The CUDA backend's plumbing: availability and `info` text, the programs'
// needed libraries and the error macros' messages (these run on every machine,
// with or without a GPU), and on a GPU: zeroed allocations, the out-of-memory
// message, async uploads whose fence really waits (queued behind a spin kernel
// of known minimum duration) and timestamps that measure it, and graph capture
// errors.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <thread>
#include <vector>

#include "cuda/cublas_check.h"
#include "cuda/cuda_stream.h"  // defines: compute_stream
#include "cuda_testing.h"
#include "tests/cuda/spin_kernel.cuh"

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

// Runs everywhere: every program starts where the CUDA libraries are missing
// (cudart is static; cuBLAS and cuDNN are dlopen'd when first needed), so none
// may name one among its needed libraries. Binaries are looked for beside this
// one first (a gpu-bundle's bin/), then at their build paths.
std::string program_path(const std::string& build_path) {
  const std::string name = std::filesystem::path(build_path).filename();
  const auto beside = std::filesystem::read_symlink("/proc/self/exe").parent_path() / name;
  if (std::filesystem::exists(beside)) return beside;
  return std::filesystem::exists(build_path) ? build_path : "";
}

TEST(CudaLinking, ProgramsNeedNoCudaLibraryToStart) {
  const std::string readelf = "/usr/bin/readelf";
  if (!std::filesystem::exists(readelf)) GTEST_SKIP() << readelf << " not found (binutils)";
  std::vector<std::string> programs = {std::filesystem::read_symlink("/proc/self/exe"),
                                       program_path(MLP_CLI_PATH)};
#ifdef MLP_KERNELS_BENCH_PATH
  programs.push_back(program_path(MLP_KERNELS_BENCH_PATH));
#endif
  const std::regex needed(R"(\(NEEDED\)\s+Shared library: \[([^\]]+)\])");
  const std::regex cuda_library(
      "^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc|nvJitLink)\\.so.*");
  for (const std::string& program : programs) {
    if (program.empty()) continue;  // not built, or not bundled
    const testing::CommandResult r = testing::run_command({readelf, "-d", program});
    ASSERT_EQ(r.exit_code, 0) << program << ": " << r.err;
    int libraries = 0;
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), needed), end; it != end; ++it) {
      ++libraries;
      EXPECT_FALSE(std::regex_match((*it)[1].str(), cuda_library))
          << program << " needs " << (*it)[1] << " to start";
    }
    EXPECT_GT(libraries, 0) << "no NEEDED entries read from " << program << ":\n" << r.out;
  }
}

TEST(CudaErrors, MacrosNameStatementFileLineAndMessage) {
  EXPECT_TRUE(
      throws_error([] { MLP_CUDA_CHECK(cudaErrorMemoryAllocation); }, ExitCode::kDevice,
                   {"CUDA error on device ", " at tests/cuda/test_cuda_backend.cpp:",
                    "cudaErrorMemoryAllocation failed: cudaErrorMemoryAllocation: out of memory"}));
  // cuBLAS names its statuses only where it can be loaded; elsewhere the number.
  const std::string status =
      cuda::cublas_load_error().empty() ? "CUBLAS_STATUS_INVALID_VALUE: " : "status 7";
  EXPECT_TRUE(throws_error([] { MLP_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); }, ExitCode::kDevice,
                           {"cuBLAS error on device ", " at tests/cuda/test_cuda_backend.cpp:",
                            "CUBLAS_STATUS_INVALID_VALUE failed: " + status}));
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

// The copy is queued behind a spin of kSpinMs on the compute stream (upload_async
// waits for compute event `after`), so it is still pending long after
// upload_async returns. The loader thread overwrites the staging buffer the
// moment wait_fence returns: had it returned before the copy read the buffer,
// the device would hold the overwritten bytes.
TEST_F(CudaTest, UploadAsyncFenceCanBeWaitedOnFromAnotherThread) {
  constexpr double kSpinMs = 50.0;
  const std::size_t n = 1 << 20;
  Buffer staging = gpu().alloc_host(n);
  Buffer dst = gpu().alloc(n);
  auto* bytes = staging.as<uint8_t>();
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  const std::vector<uint8_t> original(bytes, bytes + n);

  cuda_testing::spin_for(kSpinMs, cuda::compute_stream(gpu()));
  const uint64_t after = gpu().record_compute_event();
  const uint64_t fence = gpu().upload_async(dst.data(), staging.data(), n, after);
  const auto issued = std::chrono::steady_clock::now();
  EXPECT_GT(fence, 0u);
  double waited_ms = 0;
  std::thread loader([&] {  // as BatchStream's loader does: wait, then refill the slot
    gpu().wait_fence(fence);
    waited_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - issued)
                    .count();
    std::memset(bytes, 0xEE, n);
  });
  loader.join();
  std::vector<uint8_t> back(n);
  gpu().download(back.data(), dst.data(), n);
  EXPECT_TRUE(back == original) << "the device got bytes written after wait_fence returned";
  // The spin was queued before the copy, so a real wait lasts most of it.
  EXPECT_GE(waited_ms, 0.5 * kSpinMs) << "wait_fence returned before the queued copy ran";
  EXPECT_TRUE(throws_error([&] { gpu().upload_async(dst.data(), staging.data(), n, after + 1000); },
                           ExitCode::kFailure, {"never recorded"}));
}

// Two timestamps around a spin of at least kSpinMs (cycles at the peak clock)
// must be at least that far apart; two with nothing between them must not.
TEST_F(CudaTest, TimestampsMeasureQueuedWork) {
  constexpr double kSpinMs = 2.0;
  DeviceVec<cuda_testing::SpinResult> spin(gpu(), {cuda_testing::SpinResult{}});
  const uint64_t t0 = gpu().record_timestamp();
  cuda_testing::spin_for(kSpinMs, cuda::compute_stream(gpu()), spin.get());
  const uint64_t t1 = gpu().record_timestamp();
  const uint64_t t2 = gpu().record_timestamp();
  const double ms = gpu().elapsed_ms(t0, t1), idle_ms = gpu().elapsed_ms(t1, t2);
  const cuda_testing::SpinResult r = spin.download()[0];
  std::printf(
      "[ info ] spin of >= %.1f ms: %llu cycles, %.3f ms by %%globaltimer, %.3f ms between "
      "the timestamps; %.3f ms between two adjacent ones\n",
      kSpinMs, static_cast<unsigned long long>(r.cycles), static_cast<double>(r.global_ns) / 1e6,
      ms, idle_ms);
  EXPECT_EQ(r.min_ms, kSpinMs) << "the spin kernel did not run";
  // Event timestamps resolve about half a microsecond.
  EXPECT_TRUE(std::isfinite(ms) && ms >= kSpinMs - 1e-3) << ms;
  EXPECT_TRUE(std::isfinite(idle_ms) && idle_ms >= 0.0 && idle_ms < kSpinMs) << idle_ms;
  EXPECT_TRUE(throws_error([&] { gpu().elapsed_ms(t0, t2 + 5); }, ExitCode::kFailure,
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
