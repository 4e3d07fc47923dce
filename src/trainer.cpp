// Trainer: the epoch loop (see include/mlp/trainer.h). One step is
//   acquire staged batch -> upload into input slot (step % 2) -> replay the
//   graph captured for that slot -> mark when the slot is free again.
// The host never waits for the device inside an epoch except through the
// staging ring's backpressure; metrics are read once, at the epoch's end.
#include "mlp/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "mlp/error.h"
#include "mlp/rng.h"

namespace mlp {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

DeviceDataset::DeviceDataset(Backend& backend, const Dataset& data)
    : data_(data),
      images_(backend.alloc(data.images.size())),
      labels_(backend.alloc(data.labels.size())) {
  backend.upload(images_.data(), data.images.data(), data.images.size());
  backend.upload(labels_.data(), data.labels.data(), data.labels.size());
}

EvalResult evaluate(Backend& be, Model& model, const DeviceDataset& data) {
  ScopedRange range(be, "evaluate");
  const Dataset& ds = data.host();
  EvalResult r;
  r.count = ds.count;
  Buffer metrics = be.alloc(kMetricCount * sizeof(double));
  std::vector<float> logits;
  for (int64_t first = 0; first < ds.count; first += model.max_batch()) {
    const int64_t batch = std::min(model.max_batch(), ds.count - first);
    model.eval_step(data.images() + first * ds.pixels(), data.labels() + first, batch,
                    metrics.as<double>());
    CMat out = model.logits(batch);
    logits.resize(static_cast<std::size_t>(out.size()));
    be.download(logits.data(), out.data, logits.size() * sizeof(float));
    for (int64_t i = 0; i < batch; ++i) {
      const float* row = logits.data() + i * out.cols;
      int64_t pred = 0;
      for (int64_t c = 1; c < out.cols; ++c)
        if (row[c] > row[pred]) pred = c;
      ++r.confusion[ds.labels[first + i]][pred];
    }
  }
  double m[kMetricCount];
  be.download(m, metrics.data(), sizeof(m));
  r.loss = m[kMetricLossSum] / static_cast<double>(ds.count);
  r.accuracy = m[kMetricCorrect] / static_cast<double>(ds.count);
  return r;
}

Trainer::Trainer(Backend& backend, Model& model, const Dataset& train, const Dataset* test,
                 const TrainConfig& cfg)
    : be_(backend), model_(model), train_(train), test_(test), cfg_(cfg) {
  if (cfg_.batch_size > train_.count)
    throw usage_error(fmt::format("--batch-size {} is larger than the training set ({} samples)",
                                  cfg_.batch_size, train_.count));
  if (test_) test_dev_ = std::make_unique<DeviceDataset>(be_, *test_);
  stream_ = std::make_unique<BatchStream>(be_, train_, cfg_.batch_size);
  const auto slot_bytes = static_cast<std::size_t>(cfg_.batch_size * (train_.pixels() + 1));
  for (auto& in : inputs_) in = be_.alloc(slot_bytes);
  metrics_ = be_.alloc(kMetricCount * sizeof(double));
  if (cfg_.use_graph) {
    // One graph per input slot: each bakes in its slot's fixed addresses.
    for (int i = 0; i < 2; ++i) {
      const uint8_t* images = inputs_[i].as<uint8_t>();
      const uint8_t* labels = images + cfg_.batch_size * train_.pixels();
      graphs_[i] = be_.capture([this, images, labels] {
        model_.train_step(images, labels, cfg_.batch_size, metrics_.as<double>());
      });
    }
  }
}

Trainer::~Trainer() = default;

// The tutorial's loop: int(num_examples / batch_size) steps, the remainder dropped,
// so every step has the same shape and one captured graph serves them all.
int64_t Trainer::steps_per_epoch() const { return train_.count / cfg_.batch_size; }

// Uploads the next staged batch into input slot (index & 1) and issues one
// training step on it; no host sync.
void Trainer::issue_step(BatchStream& stream, int64_t index) {
  ScopedRange step_range(be_, "step");
  const int slot = static_cast<int>(index & 1);
  const uint8_t* staged = stream.acquire();
  uint64_t fence;
  {
    ScopedRange copy_range(be_, "copy");
    fence =
        be_.upload_async(inputs_[slot].data(), staged, stream.slot_bytes(), slot_free_event_[slot]);
  }
  stream.release(fence);
  if (graphs_[slot]) {
    be_.replay(*graphs_[slot]);
  } else {
    const uint8_t* images = inputs_[slot].as<uint8_t>();
    model_.train_step(images, images + cfg_.batch_size * train_.pixels(), cfg_.batch_size,
                      metrics_.as<double>());
  }
  slot_free_event_[slot] = be_.record_compute_event();
}

namespace {

// Epoch `epoch`'s visiting order from step `first` on (a resumed epoch skips
// the batches it already trained on).
std::vector<uint32_t> epoch_order(uint64_t seed, int64_t epoch, int64_t count, int64_t first,
                                  int64_t batch) {
  std::vector<uint32_t> order = epoch_permutation(seed, epoch, static_cast<uint32_t>(count));
  order.erase(order.begin(), order.begin() + first * batch);
  return order;
}

}  // namespace

EpochStats Trainer::train_epoch(int64_t epoch, const TrainPosition& from, TrainListener& listener) {
  ScopedRange range(be_, "epoch");
  BatchStream& stream = *stream_;
  const int64_t steps =
      cfg_.profile_steps > 0 ? std::min(cfg_.profile_steps, steps_per_epoch()) : steps_per_epoch();
  const int64_t first = std::min(from.step, steps);  // > 0 only when resuming mid-epoch
  stream.start_epoch(epoch_order(cfg_.seed, epoch, train_.count, first, cfg_.batch_size),
                     steps - first);
  listener.on_epoch_begin(epoch + 1, steps);
  const double start_metrics[kMetricCount] = {from.loss_sum, from.correct};
  be_.upload(metrics_.data(), start_metrics, sizeof(start_metrics));
  // The state at the segment's start, kept on the host only to pinpoint the
  // step if the loss goes non-finite (a copy per epoch, at an existing sync).
  ModelState snapshot;
  if (cfg_.profile_steps == 0) snapshot = model_.state();
  be_.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = first;
  for (; done < steps && !stop_requested_.load(); ++done) {
    issue_step(stream, done - first);
    listener.on_step(done + 1, steps);
  }
  double m[kMetricCount];
  be_.download(m, metrics_.data(), sizeof(m));  // the epoch's only host sync
  EpochStats s;
  s.epoch = epoch + 1;
  s.steps = done;
  s.seconds = seconds_since(t0);
  const double samples = static_cast<double>(done * cfg_.batch_size);
  if (done > 0) {
    s.loss = m[kMetricLossSum] / samples;
    s.train_accuracy = m[kMetricCorrect] / samples;
    s.samples_per_sec = static_cast<double>((done - first) * cfg_.batch_size) / s.seconds;
  }
  if (!std::isfinite(m[kMetricLossSum])) {
    const char* value = std::isnan(m[kMetricLossSum]) ? "NaN" : "infinite";
    const int64_t spe = steps_per_epoch();
    const int64_t bad =
        snapshot.params.empty() ? -1 : find_nonfinite_step(epoch, from, done, snapshot);
    if (bad > 0)
      throw Error(ExitCode::kNonFinite,
                  fmt::format("training loss became {} in epoch {} at step {} of {} "
                              "(optimizer step {}); training stopped; try a smaller --lr",
                              value, s.epoch, bad, steps, epoch * spe + bad));
    throw Error(ExitCode::kNonFinite,
                fmt::format("training loss became {} in epoch {} (steps {}..{}); "
                            "training stopped; try a smaller --lr",
                            value, s.epoch, first + 1, done));
  }
  position_ = {epoch, done, m[kMetricLossSum], m[kMetricCorrect]};
  if (done < steps) {  // stopped: the epoch is incomplete, so no test evaluation
    stopped_early_ = true;
    return s;
  }
  position_ = {epoch + 1, 0, 0.0, 0.0};
  // A --profile-steps run is a capture of training steps only: evaluating the
  // test set inside the profiler window would bury them.
  if (test_dev_ && cfg_.profile_steps == 0) {
    const EvalResult r = evaluate(be_, model_, *test_dev_);
    s.test_loss = r.loss;
    s.test_accuracy = r.accuracy;
  }
  return s;
}

// Replays steps from.step+1 .. until of `epoch` from the snapshot taken at the
// segment's start, reading the loss after every step, and returns the first
// step (1-based, within the epoch) whose loss was non-finite, or -1 when the
// replay never diverged. It runs only after a failure, so its per-step host
// syncs cost a healthy run nothing; on the CPU the replay is bit-identical.
int64_t Trainer::find_nonfinite_step(int64_t epoch, const TrainPosition& from, int64_t until,
                                     const ModelState& snapshot) {
  model_.set_state(snapshot);
  stream_->start_epoch(epoch_order(cfg_.seed, epoch, train_.count, from.step, cfg_.batch_size),
                       until - from.step);
  const double start_metrics[kMetricCount] = {from.loss_sum, from.correct};
  be_.upload(metrics_.data(), start_metrics, sizeof(start_metrics));
  for (int64_t done = from.step; done < until; ++done) {
    issue_step(*stream_, done - from.step);
    double m[kMetricCount];
    be_.download(m, metrics_.data(), sizeof(m));
    if (!std::isfinite(m[kMetricLossSum])) return done + 1;
  }
  return -1;
}

std::vector<EpochStats> Trainer::run(TrainListener& listener, int64_t first_epoch) {
  TrainPosition start;
  start.epoch = first_epoch;
  return run(listener, start);
}

std::vector<EpochStats> Trainer::run(TrainListener& listener, const TrainPosition& start) {
  std::vector<EpochStats> all;
  position_ = start;
  stopped_early_ = false;
  if (cfg_.profile_steps > 0) be_.profiler_start();
  for (int64_t e = start.epoch; e < cfg_.epochs; ++e) {
    TrainPosition from;
    from.epoch = e;
    if (e == start.epoch) from = start;
    EpochStats s = train_epoch(e, from, listener);
    if (stopped_early_) break;  // cut short: position_ says where
    all.push_back(s);
    if (cfg_.profile_steps > 0) break;
    if (!listener.on_epoch_end(all.back())) break;
    if (stop_requested_.load()) {  // arrived during the epoch's last step or its evaluation
      stopped_early_ = e + 1 < cfg_.epochs;
      break;
    }
  }
  if (cfg_.profile_steps > 0) {
    be_.synchronize();
    be_.profiler_stop();
  }
  return all;
}

}  // namespace mlp
