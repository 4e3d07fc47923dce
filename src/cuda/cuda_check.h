// CUDA and cuBLAS error checking: one macro shape for both libraries. A failing
// call throws mlp::Error(kDevice) carrying the statement, file:line and the
// library's own name and message, so tests can catch it and main() prints it.
// Header-only (no fmt) so that nvcc-compiled kernels/*.cu can use it too.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "mlp/error.h"

namespace mlp::cuda {

// "/abs/path/src/cuda/x.cpp" -> "src/cuda/x.cpp": messages name the project file.
inline const char* project_path(const char* file) {
  for (const char* dir : {"/src/", "/kernels/", "/tests/"}) {
    const char* p = std::strstr(file, dir);
    if (p) return p + 1;
  }
  return file;
}

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* stmt, const char* file,
                                          int line) {
  // Reset the runtime's last-error slot: a caller that catches this and goes
  // on must not see the same (non-sticky) error again at the next launch check.
  (void)cudaGetLastError();
  throw Error(ExitCode::kDevice, std::string("CUDA error at ") + project_path(file) + ":" +
                                     std::to_string(line) + ": " + stmt + " failed: " +
                                     cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* stmt, const char* file,
                                            int line) {
  throw Error(ExitCode::kDevice, std::string("cuBLAS error at ") + project_path(file) + ":" +
                                     std::to_string(line) + ": " + stmt +
                                     " failed: " + cublasGetStatusString(s) + " (" +
                                     cublasGetStatusName(s) + ")");
}

}  // namespace mlp::cuda

#define MLP_CUDA_CHECK(stmt)                                                   \
  do {                                                                         \
    const cudaError_t mlp_cuda_err_ = (stmt);                                  \
    if (mlp_cuda_err_ != cudaSuccess)                                          \
      ::mlp::cuda::throw_cuda_error(mlp_cuda_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

#define MLP_CUBLAS_CHECK(stmt)                                                    \
  do {                                                                            \
    const cublasStatus_t mlp_cublas_st_ = (stmt);                                 \
    if (mlp_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::mlp::cuda::throw_cublas_error(mlp_cublas_st_, #stmt, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations and missing
// kernel images at the launch site. Faults inside a kernel surface at the next
// synchronising call (download, synchronize), which is checked the same way.
#define MLP_CUDA_CHECK_LAUNCH(kernel_name)                                                        \
  do {                                                                                            \
    const cudaError_t mlp_cuda_err_ = cudaGetLastError();                                         \
    if (mlp_cuda_err_ != cudaSuccess)                                                             \
      ::mlp::cuda::throw_cuda_error(mlp_cuda_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
