// FusedTrainer (see fused_trainer.h). One epoch: upload the epoch's order once, then launches
// of up to kStepsPerLaunch steps back to back (the host waits only when it reads the metrics at
// the epoch's end), then the state goes back into the Model for checkpoints and evaluation.
#include "fused/fused_trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "mlp/error.h"
#include "mlp/rng.h"

namespace mlp::fused {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

FusedTrainer::FusedTrainer(const Backend& backend, Model& model, bool binarize,
                           const Dataset& train, const Dataset* test, const TrainerOptions& opt)
    : model_(model), train_(train), opt_(opt) {
  if (opt_.batch_size > train_.count)
    throw usage_error(fmt::format("--batch-size {} is larger than the training set ({} samples)",
                                  opt_.batch_size, train_.count));
  const std::vector<int64_t>& sizes = model_.layout().sizes();
  runner_ = make_step_runner(backend.kind(), sizes, opt_.batch_size, binarize, false);
  runner_->set_data(train_);
  if (test && opt_.evaluate)
    test_eval_ =
        std::make_unique<FusedEvaluator>(backend.kind(), sizes, opt_.batch_size, binarize, *test);
}

EpochStats FusedTrainer::train_epoch(int64_t epoch, const TrainPosition& from, int64_t step_budget,
                                     const std::vector<TrainListener*>& listeners) {
  const int64_t steps = steps_per_epoch();
  const int64_t first = std::min(from.step, steps);
  const int64_t last = step_budget > 0 ? std::min(steps, first + step_budget) : steps;
  const std::vector<uint32_t> perm =
      epoch_permutation(opt_.seed, epoch, static_cast<uint32_t>(train_.count));
  runner_->set_order(std::vector<int32_t>(perm.begin(), perm.end()));
  runner_->set_metrics(from.loss_sum, from.correct);
  for (TrainListener* l : listeners) l->on_epoch_begin(epoch + 1, steps);
  runner_->synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = first;
  while (done < last && !stop_requested_.load()) {
    const int64_t n = std::min(kStepsPerLaunch, last - done);
    runner_->run(done, n);
    for (int64_t i = 0; i < n; ++i)
      for (TrainListener* l : listeners) l->on_step(done + i + 1, steps);
    done += n;
  }
  double m[kMetricCount];
  runner_->metrics(m);  // the epoch's only host sync
  EpochStats s;
  s.epoch = epoch + 1;
  s.steps = done;
  s.complete = done == steps;
  s.seconds = seconds_since(t0);
  const double samples = static_cast<double>(done * opt_.batch_size);
  if (done > 0) {
    s.loss = m[kMetricLossSum] / samples;
    s.train_accuracy = m[kMetricCorrect] / samples;
    s.samples_per_sec = static_cast<double>((done - first) * opt_.batch_size) / s.seconds;
  }
  if (!std::isfinite(m[kMetricLossSum]))
    throw Error(
        ExitCode::kNonFinite,
        fmt::format("training loss became {} in epoch {} (steps {}..{}, --engine fused "
                    "does not locate the step); training stopped; try a smaller --lr",
                    std::isnan(m[kMetricLossSum]) ? "NaN" : "infinite", s.epoch, first + 1, done));
  const ModelState state = runner_->state();
  model_.set_state(state);  // checkpoints and `eval` read the Model
  if (!s.complete) {
    position_ = {epoch, done, m[kMetricLossSum], m[kMetricCorrect]};
    return s;
  }
  position_ = {epoch + 1, 0, 0.0, 0.0};
  if (test_eval_) {
    const EvalResult r = test_eval_->evaluate(state.params);
    s.evaluated = true;
    s.test_loss = r.loss;
    s.test_accuracy = r.accuracy;
  }
  return s;
}

std::vector<EpochStats> FusedTrainer::run(const std::vector<TrainListener*>& listeners,
                                          const TrainPosition& start) {
  position_ = start;
  runner_->set_state(model_.state(), model_.adam(), model_.schedule());
  return run_epochs(opt_, start, listeners, stop_requested_, &stopped_early_,
                    [&](int64_t epoch, const TrainPosition& from, int64_t step_budget) {
                      return train_epoch(epoch, from, step_budget, listeners);
                    });
}

}  // namespace mlp::fused
