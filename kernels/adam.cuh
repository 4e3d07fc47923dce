// Fused Adam over one flat buffer (all weights and biases at once):
//   state->step += 1; t = state->step
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
//   p -= step_size(t) * m / (sqrt(v) * inv_sqrt_bc2(t) + eps)   (adam_factors, optimizer.h)
// The optimizer state (step counter, hyperparameters, learning-rate schedule)
// lives in device memory and is read at run time, so a replayed CUDA Graph
// sees the step advance and follows the schedule; the host never needs to know t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mlp/optimizer.h"  // defines: OptimizerState

namespace mlp::kernels {

inline constexpr int kAdamBlock = 256;

// params, grads, m, v: n floats; state: one OptimizerState. Device memory.
// Issues two launches on `stream`: the counter increment, then the update.
void adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
               OptimizerState* state, cudaStream_t stream);

// The same update at t = state->step, WITHOUT the increment (the step plan's
// loss kernel advanced the counter): one launch, so a layer's update is one
// node. float4 loads and stores when all four arrays are 16-byte aligned and n
// is a multiple of 4 (the flat layout's tensors are); the arithmetic is the
// scalar kernel's, per component, so results are the same bits.
void adam_update(float* params, const float* grads, float* m, float* v, int64_t n,
                 const OptimizerState* state, cudaStream_t stream);

}  // namespace mlp::kernels
