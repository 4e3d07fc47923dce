// FusedTrainer: the epoch loop of `train --engine fused`, the counterpart of Trainer
// (include/mlp/trainer.h) for the fused engine. Same contract where it matters for results and
// files: the per-epoch order epoch_permutation(seed, epoch, count) with the remainder dropped,
// the same TrainListener events, the same EpochStats and TrainPosition, and the Model holding
// the trained state (parameters, Adam moments, step) after every epoch and at the end of run(),
// so checkpoints (--save/--resume) and `eval` work with either engine. Differences: the data
// set lives with the runner (on the device on CUDA) and each launch runs up to
// kStepsPerLaunch steps, gathering its batches there; a non-finite loss is reported for its
// epoch, not located to a step; the test set is evaluated with the fused forward-only plan.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fused/fused_evaluate.h"
#include "fused/fused_runner.h"
#include "mlp/trainer.h"

namespace mlp::fused {

class FusedTrainer {
 public:
  // Steps per launch: one launch per step would pay the cooperative launch (several µs) each
  // time; 100 keeps the listeners' progress fresh (an MNIST epoch is 6 launches).
  static constexpr int64_t kStepsPerLaunch = 100;

  // Runs on `backend`'s kind (kCpu: the emulation). Throws Error(kDevice, "--engine fused:
  // ...") when the shape or device is not supported, Error(kUsage) for a batch larger than
  // the training set.
  // binarize: as the Model was built (it does not say).
  FusedTrainer(const Backend& backend, Model& model, bool binarize, const Dataset& train,
               const Dataset* test, const TrainerOptions& opt);

  int64_t steps_per_epoch() const { return train_.count / opt_.batch_size; }
  // As Trainer::run.
  std::vector<EpochStats> run(const std::vector<TrainListener*>& listeners,
                              const TrainPosition& start = {});
  void request_stop() { stop_requested_.store(true); }
  bool stopped_early() const { return stopped_early_; }
  const TrainPosition& position() const { return position_; }
  std::string describe() const { return runner_->describe(); }
  const Plan& plan() const { return runner_->plan(); }

 private:
  EpochStats train_epoch(int64_t epoch, const TrainPosition& from, int64_t step_budget,
                         const std::vector<TrainListener*>& listeners);

  Model& model_;
  const Dataset& train_;
  TrainerOptions opt_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<FusedEvaluator> test_eval_;
  std::atomic<bool> stop_requested_{false};
  bool stopped_early_ = false;
  TrainPosition position_;
};

}  // namespace mlp::fused
