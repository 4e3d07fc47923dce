// CUDA and cuBLAS error checks: one macro shape for every library. A failing
// call throws mlp::Error(kDevice) naming the library, the device, the function,
// file:line, the failing statement and the library's own error name and text,
// so tests can catch it and main() prints it. Header-only and free of fmt, so
// the nvcc-compiled kernels here and the host code in src/cuda share it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "mlp/error.h"

#ifndef MLP_SOURCE_DIR
#define MLP_SOURCE_DIR ""
#endif

namespace mlp::cuda {

// "/home/me/src/mnist-mlp/kernels/adam.cu" -> "kernels/adam.cu": the configured
// source directory (CMake passes MLP_SOURCE_DIR) is stripped, whatever it is
// called and wherever it lives. A build directory inside the source tree gets
// relative paths from the compiler ("../kernels/adam.cu"): their leading "../"
// go. Any other path is kept whole.
inline const char* project_path(const char* file, const char* source_dir = MLP_SOURCE_DIR) {
  const std::size_t n = std::strlen(source_dir);
  if (n > 0 && std::strncmp(file, source_dir, n) == 0 && file[n] == '/') return file + n + 1;
  while (std::strncmp(file, "../", 3) == 0) file += 3;
  return file;
}

// The single shape every check reports in.
[[noreturn]] inline void throw_device_error(const char* library, const char* stmt, const char* func,
                                            const char* file, int line, const std::string& error) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  // Reset the runtime's last-error slot: a caller that catches this and goes
  // on must not see the same (non-sticky) error again at the next check.
  (void)cudaGetLastError();
  throw Error(ExitCode::kDevice, std::string(library) + " error on device " +
                                     std::to_string(device) + " in " + func + " at " +
                                     project_path(file) + ":" + std::to_string(line) + ": " + stmt +
                                     " failed: " + error);
}

inline std::string cuda_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

}  // namespace mlp::cuda

// MLP_CHECK_STATUS(library, stmt, ok, text_fn): stmt must return `ok`; on
// anything else it throws with text_fn(status). Every check is this one macro.
#define MLP_CHECK_STATUS_AS(library, stmt, what, ok, text_fn)                      \
  do {                                                                             \
    const auto mlp_status_ = (stmt);                                               \
    if (mlp_status_ != (ok))                                                       \
      ::mlp::cuda::throw_device_error(library, what, __func__, __FILE__, __LINE__, \
                                      text_fn(mlp_status_));                       \
  } while (0)
#define MLP_CHECK_STATUS(library, stmt, ok, text_fn) \
  MLP_CHECK_STATUS_AS(library, stmt, #stmt, ok, text_fn)

#define MLP_CUDA_CHECK(stmt) \
  MLP_CHECK_STATUS("CUDA", stmt, cudaSuccess, ::mlp::cuda::cuda_error_text)

// After every kernel launch: catches bad launch configurations and missing
// kernel images at the launch site. Faults inside a kernel surface at the next
// synchronising call (download, synchronize), which is checked the same way.
#define MLP_CUDA_CHECK_LAUNCH(kernel_name)                                               \
  MLP_CHECK_STATUS_AS("CUDA", cudaGetLastError(), "launch of " kernel_name, cudaSuccess, \
                      ::mlp::cuda::cuda_error_text)
