// The CPU reference for the fused engine's tests: one or more training steps through Model on
// the CPU backend, plus the Adam op and the ParamLayout offsets, in the project's own types
// (AdamHyper, ModelState), so a fused result compares with the reference field by field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlp/model.h"
#include "mlp/optimizer.h"

namespace mlp::fused_ref {

struct StepResult {
  std::vector<float> logits;  // (batch, classes), after forward
  std::vector<float> grads;   // flat layout, after backward (padding stays 0)
  ModelState after;           // after the Adam update
  double loss_sum = 0.0, correct = 0.0;
};

// {w_off(0), b_off(0), w_off(1), ..., total_floats} of ParamLayout(sizes).
std::vector<int64_t> layout_offsets(const std::vector<int64_t>& sizes);
// initial_params(layout, he, seed).
std::vector<float> he_params(const std::vector<int64_t>& sizes, uint64_t seed);

// One step of Model::forward, backward, update on the CPU backend (one thread).
StepResult cpu_step(const std::vector<int64_t>& sizes, int64_t batch, const ModelState& before,
                    const AdamHyper& h, const std::vector<uint8_t>& images,
                    const std::vector<uint8_t>& labels, bool binarize);

// Backend::adam_step on the CPU: p, m, v updated in place, *step incremented.
void cpu_adam(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m,
              std::vector<float>& v, const AdamHyper& h, int64_t* step);

// Backend::softmax_xent on the CPU: returns dlogits; adds into metrics[0..1].
std::vector<float> cpu_softmax_xent(const std::vector<float>& logits, int64_t rows, int64_t classes,
                                    const std::vector<uint8_t>& labels, double* metrics);

// cuda_unavailable_reason(): "" when a CUDA device is usable.
std::string cuda_unavailable();

}  // namespace mlp::fused_ref
