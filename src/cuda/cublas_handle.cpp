// See cublas_handle.h.
#include "cuda/cublas_handle.h"

#include "cuda/cublas_api.h"    // defines: cublas(), the dlopen'd cuBLAS
#include "cuda/cublas_check.h"  // defines: MLP_CUBLAS_CHECK, MLP_CUDA_CHECK

namespace mlp::cuda {

cublasHandle_t create_cublas(cudaStream_t stream, void* workspace, std::size_t bytes, bool tf32) {
  cublasHandle_t handle = nullptr;
  MLP_CUBLAS_CHECK(cublas().cublasCreate(&handle));
  try {
    // SetStream resets the workspace to cuBLAS's own pool, so set the workspace after it.
    MLP_CUBLAS_CHECK(cublas().cublasSetStream(handle, stream));
    MLP_CUBLAS_CHECK(cublas().cublasSetWorkspace(handle, workspace, bytes));
    MLP_CUBLAS_CHECK(cublas().cublasSetMathMode(
        handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  } catch (...) {
    (void)cublas().cublasDestroy(handle);
    throw;
  }
  return handle;
}

void warm_up_cublas(cublasHandle_t handle, cudaStream_t stream, float* scratch) {
  constexpr int kN = 64;
  static_assert(3 * kN * kN * sizeof(float) == kWarmUpScratchBytes, "scratch holds A, B and C");
  const float one = 1.0f, zero = 0.0f;
  MLP_CUBLAS_CHECK(cublas().cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, kN, kN, kN, &one, scratch,
                                        kN, scratch + kN * kN, kN, &zero, scratch + 2 * kN * kN,
                                        kN));
  MLP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace mlp::cuda
