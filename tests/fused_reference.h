// The CPU reference for the fused engine's tests: one or more training steps through Model on
// the CPU backend, plus the Adam op and the ParamLayout offsets, behind plain std types. Its
// own translation unit because mlp/backend.h and mlp/optimizer.h both define AdamHyper today;
// test files that include the fused headers include only this one of the project's seams.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlp::fused_ref {

struct Hyper {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

struct State {  // the flat layout, as ModelState
  std::vector<float> params, m, v;
  int64_t step = 0;
};

struct StepResult {
  std::vector<float> logits;  // (batch, classes), after forward
  std::vector<float> grads;   // flat layout, after backward (padding stays 0)
  State after;                // after the Adam update
  double loss_sum = 0.0, correct = 0.0;
};

// {w_off(0), b_off(0), w_off(1), ..., total_floats} of ParamLayout(sizes).
std::vector<int64_t> layout_offsets(const std::vector<int64_t>& sizes);
// initial_params(layout, he, seed).
std::vector<float> he_params(const std::vector<int64_t>& sizes, uint64_t seed);

// One step of Model::forward, backward, update on the CPU backend (one thread).
StepResult cpu_step(const std::vector<int64_t>& sizes, int64_t batch, const State& before,
                    const Hyper& h, const std::vector<uint8_t>& images,
                    const std::vector<uint8_t>& labels, bool binarize);

// Backend::adam_step on the CPU: p, m, v updated in place, *step incremented.
void cpu_adam(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m,
              std::vector<float>& v, const Hyper& h, int64_t* step);

// Backend::softmax_xent on the CPU: returns dlogits; adds into metrics[0..1].
std::vector<float> cpu_softmax_xent(const std::vector<float>& logits, int64_t rows, int64_t classes,
                                    const std::vector<uint8_t>& labels, double* metrics);

// cuda_unavailable_reason(): "" when a CUDA device is usable.
std::string cuda_unavailable();

}  // namespace mlp::fused_ref
