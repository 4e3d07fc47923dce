// Bias forward (the output layer, no activation), in place: z = z + bias,
// bias broadcast over rows.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

inline constexpr int kBiasForwardBlock = 256;

// z: (rows, cols) row-major; bias: (cols). Device memory.
void bias_forward(float* z, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace mlp::kernels
