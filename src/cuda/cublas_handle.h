// cuBLAS handles as the backend uses them: one per stream, each with its own
// workspace, and warmed up once before any graph capture.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace mlp::cuda {

// A handle on `stream` that uses `workspace` (`bytes`), so cuBLAS never
// allocates (which a graph capture could not record); strict FP32 unless
// `tf32`. Atomics stay at cuBLAS's default (not allowed), which keeps every
// GEMM deterministic run to run.
cublasHandle_t create_cublas(cudaStream_t stream, void* workspace, std::size_t bytes, bool tf32);

// Device scratch warm_up_cublas needs.
constexpr std::size_t kWarmUpScratchBytes = 3 * 64 * 64 * sizeof(float);
// One small SGEMM on `handle` outside any capture, then waits for `stream`: a
// library's first call may set up state lazily, which a stream capture could
// not record. Costs about a millisecond, once.
void warm_up_cublas(cublasHandle_t handle, cudaStream_t stream, float* scratch);

}  // namespace mlp::cuda
