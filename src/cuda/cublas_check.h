// MLP_CUBLAS_CHECK: cuBLAS statuses through the same check as CUDA's (see
// kernels/cuda_check.cuh), so every device error reads the same way.
#pragma once

#include <string>

#include "cuda/cublas_api.h"       // defines: cublas(), cublas_load_error()
#include "kernels/cuda_check.cuh"  // defines: MLP_CHECK_STATUS

namespace mlp::cuda {

inline std::string cublas_error_text(cublasStatus_t s) {
  if (!cublas_load_error().empty()) return "status " + std::to_string(static_cast<int>(s));
  const CublasApi& api = cublas();
  return std::string(api.cublasGetStatusName(s)) + ": " + api.cublasGetStatusString(s);
}

}  // namespace mlp::cuda

#define MLP_CUBLAS_CHECK(stmt) \
  MLP_CHECK_STATUS("cuBLAS", stmt, CUBLAS_STATUS_SUCCESS, ::mlp::cuda::cublas_error_text)
