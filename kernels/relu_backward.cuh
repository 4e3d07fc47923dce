// ReLU backward, in place: grad = grad * (act > 0), where act is the ReLU's
// output (act > 0 exactly where its input was > 0).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

inline constexpr int kReluBackwardBlock = 256;

// grad, act: n elements in device memory.
void relu_backward(float* grad, const float* act, int64_t n, cudaStream_t stream);

}  // namespace mlp::kernels
