// What CUDA this binary has and whether it can use it: cuda_compiled,
// cuda_unavailable_reason ("" only when a device is usable, else one plain
// sentence) and cuda_report (the block `mnist-mlp info` prints). Probing never
// throws: every failure becomes text. The driver is looked for with dlopen
// first, so a machine without one gets "no NVIDIA driver" rather than cudart's
// misleading "driver version is insufficient".
#include "cuda/cuda_info.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <library_types.h>

#include <fstream>
#include <regex>

#include "cuda/cublas_api.h"
#include "kernels/probe.cuh"
#include "mlp/backend.h"

#ifndef MLP_CUDA_ARCHITECTURES
#define MLP_CUDA_ARCHITECTURES "unknown"
#endif

namespace mlp {
namespace {

std::string cuda_version(int v) { return fmt::format("{}.{}", v / 1000, v % 1000 / 10); }
double gib(std::size_t bytes) { return static_cast<double>(bytes) / (1 << 30); }

// Empty when libcuda.so.1 loads, else the loader's message. Kept loaded:
// cudart dlopens the same library right after.
std::string driver_load_error() {
  if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) return "";
  const char* e = dlerror();
  return e ? e : "libcuda.so.1 not found";
}

// The kernel module's release, e.g. "580.95.05", or "" when not readable.
std::string driver_release() {
  std::ifstream f("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(f, line)) return "";
  std::smatch m;
  if (std::regex_search(line, m, std::regex(R"(Module\s+([0-9]+(\.[0-9]+)+))"))) return m[1];
  return "";
}

std::string cublas_version() {
  if (!cuda::cublas_load_error().empty()) return "not loadable: " + cuda::cublas_load_error();
  const cuda::CublasApi& api = cuda::cublas();
  int major = 0, minor = 0, patch = 0;
  if (api.cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      api.cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      api.cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
    return "unknown";
  return fmt::format("{}.{}.{} (loaded at run time)", major, minor, patch);
}

// cuDNN is never linked into mnist-mlp (only the GPU tests use it); report
// what a dlopen would find.
std::string cudnn_version() {
  for (const char* name : {"libcudnn.so.9", "libcudnn.so"}) {
    void* h = dlopen(name, RTLD_LAZY | RTLD_LOCAL);
    if (!h) continue;
    using GetVersion = std::size_t (*)();
    auto get = reinterpret_cast<GetVersion>(dlsym(h, "cudnnGetVersion"));
    std::string out = "found but cudnnGetVersion is missing";
    if (get) {
      const std::size_t v = get();  // 9.x: M*10000 + m*100 + p; 8.x: M*1000 + m*100 + p
      const std::size_t major_div = v >= 90000 ? 10000 : 1000;
      out = fmt::format("{}.{}.{} ({})", v / major_div, v % major_div / 100, v % 100, name);
    }
    dlclose(h);
    return out + "; used only by the GPU tests";
  }
  return "not found (libcudnn.so.9 is not on the library path); only the GPU tests use it";
}

std::string compute_unavailable_reason() {
  const std::string load_error = driver_load_error();
  if (!load_error.empty())
    return "no NVIDIA driver is installed (libcuda.so.1 could not be loaded), so no CUDA device "
           "is present";
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    if (e == cudaErrorInsufficientDriver)
      return fmt::format(
          "the NVIDIA driver supports CUDA {} but this binary was built with "
          "CUDA {}; update the driver",
          cuda_version(driver), cuda_version(runtime));
    if (e == cudaErrorNoDevice) return "the NVIDIA driver is loaded but found no CUDA device";
    return fmt::format("CUDA could not start: {} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
  }
  if (count == 0) return "the NVIDIA driver is loaded but found no CUDA device";
  const std::string problem = cuda::device_problem(0);
  if (!problem.empty()) return problem;
  if (!cuda::cublas_load_error().empty())
    return "a CUDA device is present but cuBLAS is not: " + cuda::cublas_load_error();
  return "";
}

}  // namespace

namespace cuda {

std::string device_problem(int device) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = 0;
  cudaDeviceProp prop{};
  cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e == cudaSuccess) e = cudaSetDevice(device);
  int binary = 0, ptx = 0;
  if (e == cudaSuccess) e = kernels::probe_kernel_image(&binary, &ptx);
  (void)cudaSetDevice(previous);
  (void)cudaGetLastError();
  if (e == cudaSuccess) return "";
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction ||
      e == cudaErrorUnsupportedPtxVersion)
    return fmt::format(
        "CUDA device {} ({}, compute capability {}.{}) cannot run this build's "
        "kernels (compiled for CUDA architectures {}); rebuild with "
        "-DCMAKE_CUDA_ARCHITECTURES={}{}",
        device, prop.name, prop.major, prop.minor, MLP_CUDA_ARCHITECTURES, prop.major, prop.minor);
  return fmt::format("CUDA device {} is not usable: {} ({})", device, cudaGetErrorString(e),
                     cudaGetErrorName(e));
}

}  // namespace cuda

bool cuda_compiled() { return true; }

std::string cuda_unavailable_reason() {
  // Computed once: the answer cannot change while the process runs, and the
  // first cudaGetDeviceCount is the expensive part (driver initialisation).
  static const std::string reason = compute_unavailable_reason();
  return reason;
}

std::string cuda_report() {
  int runtime = 0, driver = 0;
  (void)cudaRuntimeGetVersion(&runtime);
  std::string r = "CUDA backend: compiled in\n";
  r += fmt::format(
      "  built with   CUDA runtime {} (linked statically); kernels for CUDA "
      "architectures {}\n",
      cuda_version(runtime), MLP_CUDA_ARCHITECTURES);
  r += fmt::format("  cuBLAS       {}\n", cublas_version());
  r += fmt::format("  cuDNN        {}\n", cudnn_version());
  const std::string reason = cuda_unavailable_reason();
  const std::string load_error = driver_load_error();
  if (!load_error.empty()) {
    r += "  driver       none (libcuda.so.1 could not be loaded)\n";
  } else {
    (void)cudaDriverGetVersion(&driver);
    const std::string release = driver_release();
    r += fmt::format("  driver       {}supports CUDA {}\n",
                     release.empty() ? "" : "NVIDIA " + release + ", ", cuda_version(driver));
  }
  int count = 0;
  if (load_error.empty() && cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  if (count == 0) {
    r += "  devices      none: " + reason + "\n";
    return r;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
      (void)cudaGetLastError();
      r += fmt::format("  device {}     properties unavailable\n", d);
      continue;
    }
    std::size_t free_bytes = 0, total_bytes = 0;
    int previous = 0;
    (void)cudaGetDevice(&previous);
    int binary = 0, ptx = 0;
    cudaError_t image = cudaSetDevice(d);
    if (image == cudaSuccess) (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    if (image == cudaSuccess) image = kernels::probe_kernel_image(&binary, &ptx);
    (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
    r += fmt::format(
        "  device {}     {}: compute capability {}.{}, {} SMs, {:.1f} GiB memory "
        "({:.1f} GiB free), {:.0f} MiB L2\n",
        d, p.name, p.major, p.minor, p.multiProcessorCount, gib(p.totalGlobalMem), gib(free_bytes),
        static_cast<double>(p.l2CacheSize) / (1 << 20));
    const std::string problem = image == cudaSuccess ? "" : cuda::device_problem(d);
    r += problem.empty()
             ? fmt::format("               runs this build's sm_{} code (from compute_{})\n",
                           binary, ptx)
             : "               " + problem + "\n";
  }
  if (!reason.empty()) r += "  not usable:  " + reason + "\n";
  return r;
}

}  // namespace mlp
