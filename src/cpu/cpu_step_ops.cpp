// CPU references for the fused step ops (see cpu_step_ops.h).
#include "cpu/cpu_step_ops.h"

#include "cpu/cpu_ops.h"

namespace mlp::cpu {

void relu_backward_bias_grad(ThreadPool& pool, Mat grad, CMat act, float* db) {
  relu_backward(pool, grad, act);
  bias_grad(grad, db);
}

void softmax_xent_backward(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                           double* metrics, OptimizerState* step_counter) {
  softmax_xent(logits, labels, dlogits.data, metrics);
  bias_grad(dlogits, db);
  if (step_counter) step_counter->step += 1;
}

void adam_update(ThreadPool& pool, float* params, const float* grads, float* m, float* v, int64_t n,
                 const OptimizerState* state) {
  // adam_step increments first and then uses t = step: hand it a copy one step
  // behind, so it applies exactly the factors of t = state->step and the real
  // counter stays untouched.
  OptimizerState behind = *state;
  behind.step -= 1;
  adam_step(pool, params, grads, m, v, n, &behind);
}

}  // namespace mlp::cpu
