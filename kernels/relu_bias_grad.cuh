// ReLU backward and the bias gradient in one pass over dA (the step plan's
// node after each hidden layer's dX GEMM):
//   grad = act > 0 ? grad : 0   (in place; act is the ReLU's output)
//   db   = column sums of the masked grad
// Deterministic: no atomics; each column is summed in an order fixed by the shape.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

// Block = kReluBiasGradCols x kReluBiasGradRows threads: 32 columns per block
// (one coalesced 128-byte segment per warp), 16 row lanes splitting the rows.
inline constexpr int kReluBiasGradCols = 32;
inline constexpr int kReluBiasGradRows = 16;

// grad, act: (rows, cols) row-major; db: (cols), overwritten. Device memory.
void relu_backward_bias_grad(float* grad, const float* act, float* db, int64_t rows, int64_t cols,
                             cudaStream_t stream);

}  // namespace mlp::kernels
