// Bias gradient: db = column sums of grad (a column reduction over the batch).
// Deterministic: no atomics; each column is summed in a fixed order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

// Block = kBiasGradCols x kBiasGradRows threads: 32 columns per block (one
// coalesced 128-byte row segment per warp), 16 row lanes splitting the rows.
inline constexpr int kBiasGradCols = 32;
inline constexpr int kBiasGradRows = 16;

// grad: (rows, cols) row-major; db: (cols), overwritten. Device memory.
void bias_grad(const float* grad, float* db, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace mlp::kernels
