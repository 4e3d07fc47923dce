// Fused Adam over one flat buffer (all weights and biases at once):
//   *step += 1; t = *step
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc = 1 - beta^t (PyTorch form)
// The step counter lives in device memory so a captured CUDA Graph sees it
// advance on every replay; the host never needs to know t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mlp/backend.h"  // defines: AdamHyper

namespace mlp::kernels {

inline constexpr int kAdamBlock = 256;

// params, grads, m, v: n floats; step: one int64 counter. Device memory.
// Issues two launches on `stream`: the counter increment, then the update.
void adam_step(float* params, const float* grads, float* m, float* v, int64_t n, const AdamHyper& h,
               int64_t* step, cudaStream_t stream);

}  // namespace mlp::kernels
