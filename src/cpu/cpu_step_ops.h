// CPU references for the step plan's fused ops (Backend::relu_backward_bias_grad,
// softmax_xent_backward, adam_update). Each is the composition of the existing
// reference ops (src/cpu/cpu_ops.h) in the order the unfused step ran them, so
// the plan's step on the CPU gives the same bits as the old sequential step,
// and the CUDA kernels are checked against the same arithmetic.
#pragma once

#include <cstdint>

#include "cpu/thread_pool.h"
#include "mlp/backend.h"

namespace mlp::cpu {

void relu_backward_bias_grad(ThreadPool& pool, Mat grad, CMat act, float* db);
void softmax_xent_backward(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                           double* metrics, OptimizerState* step_counter);
void adam_update(ThreadPool& pool, float* params, const float* grads, float* m, float* v, int64_t n,
                 const OptimizerState* state);

}  // namespace mlp::cpu
