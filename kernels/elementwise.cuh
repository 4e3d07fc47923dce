// The pointwise ops, one templated kernel with a small device functor each
// (kernels/elementwise.cu): input conversion, bias + ReLU, bias, ReLU backward.
// Same arithmetic as the CPU reference ops (src/cpu/cpu_ops.cpp), so results
// are bitwise equal: each is one IEEE operation per element, no contraction.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

inline constexpr int kElementwiseBlock = 256;

// out = in / 255, or (in > 127 ? 1 : 0) when binarizing. in, out: n elements.
void u8_to_float(const uint8_t* in, float* out, int64_t n, bool binarize, cudaStream_t stream);
// z = max(z + bias, 0) in place, bias broadcast over rows; NaN passes through so
// the loss sees it. z: (rows, cols) row-major; bias: (cols).
void bias_relu_forward(float* z, const float* bias, int64_t rows, int64_t cols,
                       cudaStream_t stream);
// z = z + bias in place (the output layer). z: (rows, cols); bias: (cols).
void bias_forward(float* z, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// grad = act > 0 ? grad : 0 in place; act is the ReLU's output. n elements.
void relu_backward(float* grad, const float* act, int64_t n, cudaStream_t stream);

}  // namespace mlp::kernels
