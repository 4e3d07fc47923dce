// Trainer: the epoch loop (see include/mlp/trainer.h). One step is
//   acquire staged batch -> upload into input slot (step % 2) -> replay the
//   graph captured for that slot -> mark when the slot is free again.
// The host never waits for the device inside an epoch except through the
// staging ring's backpressure; metrics are read with a blocking download once,
// at the epoch's end (--log-interval's copies are polled, never waited for).
#include "mlp/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "mlp/error.h"
#include "mlp/rng.h"

namespace mlp {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Epoch `epoch`'s visiting order from step `first` on (a resumed epoch skips
// the batches it already trained on).
std::vector<uint32_t> epoch_order(uint64_t seed, int64_t epoch, int64_t count, int64_t first,
                                  int64_t batch) {
  std::vector<uint32_t> order = epoch_permutation(seed, epoch, static_cast<uint32_t>(count));
  order.erase(order.begin(), order.begin() + first * batch);
  return order;
}

}  // namespace

Trainer::Trainer(Backend& backend, Model& model, const Dataset& train, const Dataset* test,
                 const TrainerOptions& opt)
    : be_(backend), model_(model), train_(train), opt_(opt) {
  if (opt_.batch_size > train_.count)
    throw usage_error(fmt::format("--batch-size {} is larger than the training set ({} samples)",
                                  opt_.batch_size, train_.count));
  if (test && opt_.evaluate) test_dev_ = std::make_unique<DeviceDataset>(be_, *test);
  // On the CPU the batch is gathered on the training thread itself: a loader
  // thread there only takes a core from the step (see mlp/batch_stream.h).
  stream_ = std::make_unique<BatchStream>(be_, train_, opt_.batch_size,
                                          be_.kind() == BackendKind::kCpu
                                              ? BatchStream::Staging::kOnAcquire
                                              : BatchStream::Staging::kLoaderThread);
  const auto slot_bytes = static_cast<std::size_t>(opt_.batch_size * (train_.pixels() + 1));
  for (auto& in : inputs_) in = be_.alloc(slot_bytes);
  metrics_ = be_.alloc(kMetricCount * sizeof(double));
  if (opt_.log_interval < 0)
    throw usage_error(fmt::format("--log-interval {}: must be >= 0", opt_.log_interval));
  if (opt_.log_interval > 0)
    interval_host_ = be_.alloc_host(kIntervalSlots * kMetricCount * sizeof(double));
  if (opt_.use_graph) capture_graphs();
}

Trainer::~Trainer() = default;

// One graph per input slot: each bakes in its slot's fixed addresses. Before
// capturing, one eager step per slot (on the zeroed slot, into scratch metrics,
// the model's state restored afterwards) lets every library meet the real
// shapes outside a capture: cuBLAS picks and sets up its GEMM kernels lazily,
// which a capture could not record. If capture still fails, train eagerly.
void Trainer::capture_graphs() {
  const ModelState saved = model_.state();
  Buffer scratch_metrics = be_.alloc(kMetricCount * sizeof(double));
  for (int i = 0; i < 2; ++i) {
    const uint8_t* images = inputs_[i].as<uint8_t>();
    model_.train_step(images, images + opt_.batch_size * train_.pixels(), opt_.batch_size,
                      scratch_metrics.as<double>());
  }
  be_.synchronize();
  model_.set_state(saved);
  try {
    for (int i = 0; i < 2; ++i) {
      // By value: on the CPU the "graph" is this function, called at every replay.
      const uint8_t* images = inputs_[i].as<uint8_t>();
      const uint8_t* labels = images + opt_.batch_size * train_.pixels();
      graphs_[i] = be_.capture([this, images, labels] {
        model_.train_step(images, labels, opt_.batch_size, metrics_.as<double>());
      });
    }
  } catch (const Error& e) {
    graphs_[0].reset();
    graphs_[1].reset();
    graph_fallback_ = e.what();
  }
}

// The tutorial's loop: int(num_examples / batch_size) steps, the remainder dropped,
// so every step has the same shape and one captured graph serves them all.
int64_t Trainer::steps_per_epoch() const { return train_.count / opt_.batch_size; }

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
    model_.train_step(images, images + opt_.batch_size * train_.pixels(), opt_.batch_size,
                      metrics_.as<double>());
  }
  slot_free_event_[slot] = be_.record_compute_event();
}

// The metrics buffer holds the epoch's running sums; copying it after a step
// and subtracting the previous copy gives that interval's loss and accuracy.
// The copy is queued behind the step and only polled for, so on the GPU the
// host keeps issuing steps meanwhile.
void Trainer::queue_interval(int64_t step) {
  PendingInterval p;
  p.slot = next_interval_slot_;
  next_interval_slot_ = (next_interval_slot_ + 1) % kIntervalSlots;
  p.download = be_.download_async(interval_host_.as<double>() + p.slot * kMetricCount,
                                  metrics_.data(), kMetricCount * sizeof(double));
  p.step = step;
  p.issued = std::chrono::steady_clock::now();
  pending_.push_back(p);
}

// Hands every interval whose copy has landed to the listeners, oldest first,
// and waits for the oldest ones while more than `keep` are in flight: only when
// the device is ~kIntervalSlots intervals behind (the staging ring keeps it a
// few steps behind), or with keep == 0 after the epoch's blocking download.
void Trainer::poll_intervals(int64_t epoch, std::size_t keep,
                             const std::vector<TrainListener*>& listeners) {
  while (!pending_.empty()) {
    const PendingInterval p = pending_.front();
    if (!be_.download_ready(p.download)) {
      if (pending_.size() <= keep) return;
      while (!be_.download_ready(p.download)) std::this_thread::yield();
    }
    pending_.pop_front();
    const double* m = interval_host_.as<double>() + p.slot * kMetricCount;
    IntervalStats s;
    s.epoch = epoch + 1;
    s.step = p.step;
    s.global_step = epoch * steps_per_epoch() + p.step;
    s.steps = p.step - last_interval_.step;
    const double samples = static_cast<double>(s.steps * opt_.batch_size);
    s.loss = (m[kMetricLossSum] - last_interval_sums_[kMetricLossSum]) / samples;
    s.train_accuracy = (m[kMetricCorrect] - last_interval_sums_[kMetricCorrect]) / samples;
    const double secs = std::chrono::duration<double>(p.issued - last_interval_.issued).count();
    s.samples_per_sec = secs > 0 ? samples / secs : 0.0;
    s.lr = scheduled_lr(model_.adam(), model_.schedule(), s.global_step);
    last_interval_ = p;
    std::copy(m, m + kMetricCount, last_interval_sums_);
    for (TrainListener* l : listeners) l->on_interval(s);
  }
}

// Trains epoch `epoch` from `from` for at most step_budget steps (the rest of a
// run's max_steps; <= 0: no limit).
EpochStats Trainer::train_epoch(int64_t epoch, const TrainPosition& from, int64_t step_budget,
                                const std::vector<TrainListener*>& listeners) {
  ScopedRange range(be_, "epoch");
  BatchStream& stream = *stream_;
  const int64_t steps = steps_per_epoch();
  const int64_t first = std::min(from.step, steps);  // > 0 only when resuming mid-epoch
  const int64_t last = step_budget > 0 ? std::min(steps, first + step_budget) : steps;
  stream.start_epoch(epoch_order(opt_.seed, epoch, train_.count, first, opt_.batch_size),
                     last - first);
  for (TrainListener* l : listeners) l->on_epoch_begin(epoch + 1, steps);
  const double start_metrics[kMetricCount] = {from.loss_sum, from.correct};
  be_.upload(metrics_.data(), start_metrics, sizeof(start_metrics));
  // The state at the segment's start, kept on the host only to pinpoint the
  // step if the loss goes non-finite (a copy per epoch, at an existing sync).
  ModelState snapshot;
  if (opt_.locate_nonfinite) snapshot = model_.state();
  be_.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  pending_.clear();
  last_interval_ = {0, 0, first, t0};
  std::copy(start_metrics, start_metrics + kMetricCount, last_interval_sums_);
  const int64_t every = opt_.log_interval;
  int64_t done = first;
  for (; done < last && !stop_requested_.load(); ++done) {
    issue_step(stream, done - first);
    try {
      if (every > 0 && (done + 1) % every == 0) {
        poll_intervals(epoch, kIntervalSlots - 1, listeners);  // a free slot for this one
        queue_interval(done + 1);
      }
      if (every > 0) poll_intervals(epoch, kIntervalSlots, listeners);
      for (TrainListener* l : listeners) l->on_step(done + 1, steps);
    } catch (...) {
      // A listener threw mid-epoch (a --log-json write failed, say) after step done + 1
      // was issued: record where training stands, so the caller can still save a
      // checkpoint that resumes to the same bits.
      double m[kMetricCount];
      be_.download(m, metrics_.data(), sizeof(m));  // waits for the issued steps
      position_ = done + 1 == steps
                      ? TrainPosition{epoch + 1, 0, 0.0, 0.0}
                      : TrainPosition{epoch, done + 1, m[kMetricLossSum], m[kMetricCorrect]};
      throw;
    }
  }
  double m[kMetricCount];
  be_.download(m, metrics_.data(), sizeof(m));  // the epoch's only blocking host sync
  poll_intervals(epoch, 0, listeners);          // all landed: the download waited for them
  EpochStats s;
  s.epoch = epoch + 1;
  s.steps = done;
  s.complete = done == steps;
  s.seconds = seconds_since(t0);
  s.lr = scheduled_lr(model_.adam(), model_.schedule(), epoch * steps + std::max(done, int64_t{1}));
  const double samples = static_cast<double>(done * opt_.batch_size);
  if (done > 0) {
    s.loss = m[kMetricLossSum] / samples;
    s.train_accuracy = m[kMetricCorrect] / samples;
    s.samples_per_sec = static_cast<double>((done - first) * opt_.batch_size) / s.seconds;
  }
  if (!std::isfinite(m[kMetricLossSum])) {
    const char* value = std::isnan(m[kMetricLossSum]) ? "NaN" : "infinite";
    const int64_t bad =
        snapshot.params.empty() ? -1 : find_nonfinite_step(epoch, from, done, snapshot);
    if (bad > 0)
      throw Error(ExitCode::kNonFinite,
                  fmt::format("training loss became {} in epoch {} at step {} of {} "
                              "(optimizer step {}); training stopped; try a smaller --lr",
                              value, s.epoch, bad, steps, epoch * steps + bad));
    throw Error(ExitCode::kNonFinite,
                fmt::format("training loss became {} in epoch {} (steps {}..{}); "
                            "training stopped; try a smaller --lr",
                            value, s.epoch, first + 1, done));
  }
  if (!s.complete) {  // cut short: no test evaluation
    position_ = {epoch, done, m[kMetricLossSum], m[kMetricCorrect]};
    return s;
  }
  position_ = {epoch + 1, 0, 0.0, 0.0};
  if (test_dev_) {
    const EvalResult r = evaluate(be_, model_, *test_dev_);
    s.evaluated = true;
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
  stream_->start_epoch(epoch_order(opt_.seed, epoch, train_.count, from.step, opt_.batch_size),
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

std::vector<EpochStats> run_epochs(const TrainerOptions& opt, const TrainPosition& start,
                                   const std::vector<TrainListener*>& listeners,
                                   const std::atomic<bool>& stop_requested, bool* stopped_early,
                                   const TrainEpochFn& train_epoch) {
  std::vector<EpochStats> all;
  *stopped_early = false;
  int64_t steps_left = opt.max_steps;  // <= 0: no limit
  for (int64_t e = start.epoch; e < opt.epochs; ++e) {
    TrainPosition from;
    from.epoch = e;
    if (e == start.epoch) from = start;
    const EpochStats s = train_epoch(e, from, opt.max_steps > 0 ? steps_left : 0);
    const int64_t ran = s.steps - std::min(from.step, s.steps);
    if (ran > 0) all.push_back(s);  // an epoch stopped before its first step is not reported
    if (opt.max_steps > 0) steps_left -= ran;
    if (!s.complete) {  // a stop request or the step limit: the trainer's position says where
      *stopped_early = stop_requested.load();
      break;
    }
    bool go_on = true;
    for (TrainListener* l : listeners) go_on = l->on_epoch_end(s) && go_on;
    if (!go_on || (opt.max_steps > 0 && steps_left <= 0)) break;
    if (stop_requested.load()) {  // arrived during the epoch's last step or its evaluation
      *stopped_early = e + 1 < opt.epochs;
      break;
    }
  }
  return all;
}

std::vector<EpochStats> Trainer::run(const std::vector<TrainListener*>& listeners,
                                     const TrainPosition& start) {
  position_ = start;
  return run_epochs(opt_, start, listeners, stop_requested_, &stopped_early_,
                    [&](int64_t epoch, const TrainPosition& from, int64_t step_budget) {
                      return train_epoch(epoch, from, step_budget, listeners);
                    });
}

}  // namespace mlp
