// Evaluation with the fused engine's forward-only plan: loss, accuracy and the confusion matrix
// of a parameter vector over a whole data set, kept with the runner (on the device on CUDA).
// One launch per batch (the logits of each come back for the confusion matrix); a last,
// shorter batch gets a plan of its own. Used by `eval --engine fused` and FusedTrainer.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fused/fused_runner.h"
#include "mlp/evaluate.h"

namespace mlp::fused {

class FusedEvaluator {
 public:
  // Throws Error(kDevice, "--engine fused: ...") when a plan is not supported.
  FusedEvaluator(BackendKind kind, const std::vector<int64_t>& sizes, int64_t batch, bool binarize,
                 const Dataset& data);
  EvalResult evaluate(const std::vector<float>& params);
  const StepRunner& runner() const { return *full_; }

 private:
  const Dataset& data_;
  int64_t batch_;
  std::unique_ptr<StepRunner> full_, rest_;  // rest_: the count % batch rows at the end
};

}  // namespace mlp::fused
