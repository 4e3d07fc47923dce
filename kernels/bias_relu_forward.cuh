// Fused bias + ReLU forward, in place: z = max(z + bias, 0), bias broadcast
// over rows. One pass over z instead of two (bias add, then ReLU).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

inline constexpr int kBiasReluBlock = 256;

// z: (rows, cols) row-major; bias: (cols). Device memory.
void bias_relu_forward(float* z, const float* bias, int64_t rows, int64_t cols,
                       cudaStream_t stream);

}  // namespace mlp::kernels
