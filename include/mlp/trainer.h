// Trainer: the epoch loop. Streams batches through BatchStream, replays the
// captured training step (or issues it eagerly), keeps loss and accuracy on
// the backend until the epoch ends, then evaluates on the test set. Knows
// nothing about CUDA (everything device-specific sits behind Backend) nor
// about the command line: it gets only what it reads (TrainerOptions), and
// what it reports goes to listeners.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/batch_stream.h"
#include "mlp/dataset.h"
#include "mlp/evaluate.h"
#include "mlp/model.h"

namespace mlp {

struct TrainerOptions {
  int64_t epochs = 10;  // run() trains until this many epochs are complete
  int64_t batch_size = 100;
  uint64_t seed = 1;      // the per-epoch shuffle: epoch_permutation(seed, epoch, count)
  bool use_graph = true;  // capture the step once per input slot and replay it
  int64_t max_steps = 0;  // > 0: a run() stops after this many steps (profiling, bench)
  bool evaluate = true;   // test-set evaluation after each complete epoch (with a test set)
  // Keep a host copy of the model at each epoch's start, so that a non-finite
  // loss can be traced to its step (costs one download per epoch).
  bool locate_nonfinite = true;
  // > 0: an on_interval() event every N steps of an epoch, with the loss and
  // accuracy of those N steps, read with download_async() so that the host
  // never waits for the device (0: per epoch only).
  int64_t log_interval = 0;
};

struct EpochStats {
  int64_t epoch = 0;          // 1-based, as printed
  int64_t steps = 0;          // optimizer steps in this epoch so far
  bool complete = false;      // all steps_per_epoch() steps done (else cut short)
  double loss = 0;            // mean training loss over the epoch's samples
  double train_accuracy = 0;  // on the training batches as they were seen
  bool evaluated = false;     // test_loss / test_accuracy hold values
  double test_loss = 0;
  double test_accuracy = 0;
  double seconds = 0;  // training time, test evaluation excluded
  double samples_per_sec = 0;
  double lr = 0;  // the learning rate of the epoch's last step
};

// The last `steps` steps before step `step` of epoch `epoch` (--log-interval).
struct IntervalStats {
  int64_t epoch = 0;           // 1-based
  int64_t step = 0;            // in the epoch, 1-based: the interval's last step
  int64_t global_step = 0;     // Adam's t for that step: epochs before it * steps + step
  int64_t steps = 0;           // steps in this interval
  double loss = 0;             // mean training loss over the interval's samples
  double train_accuracy = 0;   // on those samples
  double samples_per_sec = 0;  // the interval's samples over the host time it took to issue them
  double lr = 0;               // the learning rate of the interval's last step
};

// Where training stands: complete epochs, plus steps into the next one with
// that partial epoch's metric sums, so a run stopped mid-epoch (Ctrl-C) resumes
// to the same bits. A checkpoint stores exactly this.
struct TrainPosition {
  int64_t epoch = 0;    // complete epochs
  int64_t step = 0;     // steps done in epoch `epoch` (0 at an epoch boundary)
  double loss_sum = 0;  // kMetricLossSum over those steps
  double correct = 0;   // kMetricCorrect over those steps
};

class TrainListener {
 public:
  virtual ~TrainListener() = default;
  virtual void on_epoch_begin(int64_t /*epoch*/, int64_t /*steps*/) {}
  virtual void on_step(int64_t /*step_in_epoch*/, int64_t /*steps*/) {}
  // Every TrainerOptions::log_interval steps, a little after the step (when
  // its metrics have reached the host); all of an epoch's intervals come
  // before its on_epoch_end().
  virtual void on_interval(const IntervalStats& /*stats*/) {}
  // After each complete epoch. Return false to stop training after it.
  virtual bool on_epoch_end(const EpochStats& /*stats*/) { return true; }
};

// The epoch loop that Trainer::run and the fused engine's trainer share, so that
// both stop, resume and report alike: trains from `start` until opt.epochs are
// complete, opt.max_steps steps ran, `stop_requested` was set, or a listener
// returned false (see Trainer::run). train_epoch(epoch, from, step_budget)
// trains one epoch from `from` (step_budget <= 0: no limit). Sets
// *stopped_early as Trainer::stopped_early() says.
using TrainEpochFn =
    std::function<EpochStats(int64_t epoch, const TrainPosition& from, int64_t step_budget)>;
std::vector<EpochStats> run_epochs(const TrainerOptions& opt, const TrainPosition& start,
                                   const std::vector<TrainListener*>& listeners,
                                   const std::atomic<bool>& stop_requested, bool* stopped_early,
                                   const TrainEpochFn& train_epoch);

class Trainer {
 public:
  Trainer(Backend& backend, Model& model, const Dataset& train, const Dataset* test,
          const TrainerOptions& opt);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  int64_t steps_per_epoch() const;
  // Trains from `start` (a resumed checkpoint's position; the model must hold
  // the state saved there) until opt.epochs are complete, opt.max_steps steps
  // ran, request_stop() was called, or a listener returned false. Every
  // listener hears every event, in the order given. Returns the stats of each
  // epoch it trained steps in, the last one possibly cut short (complete ==
  // false; such an epoch gets no on_epoch_end() and no evaluation).
  // Throws Error(kNonFinite) when an epoch's loss is not finite, naming the
  // first step whose loss was not (see trainer.cpp).
  std::vector<EpochStats> run(const std::vector<TrainListener*>& listeners,
                              const TrainPosition& start = {});
  // Async-signal-safe: the loop stops after the step in progress.
  void request_stop() { stop_requested_.store(true); }
  // The last run() ended because of request_stop() before all epochs were done.
  bool stopped_early() const { return stopped_early_; }
  // Where the last run() stopped (all epochs done, or the step after a stop).
  const TrainPosition& position() const { return position_; }
  // Why the step is issued eagerly although opt.use_graph asked for a graph
  // (capture or instantiation failed), or "" when graphs are in use or were
  // not asked for. The caller says so once; training goes on either way.
  const std::string& graph_fallback() const { return graph_fallback_; }

 private:
  EpochStats train_epoch(int64_t epoch, const TrainPosition& from, int64_t step_budget,
                         const std::vector<TrainListener*>& listeners);
  void issue_step(BatchStream& stream, int64_t index);
  void capture_graphs();
  // --log-interval: queue a metrics download after step `step` of the epoch,
  // and hand the ones that have landed to the listeners (see trainer.cpp).
  void queue_interval(int64_t step);
  void poll_intervals(int64_t epoch, std::size_t keep,
                      const std::vector<TrainListener*>& listeners);
  int64_t find_nonfinite_step(int64_t epoch, const TrainPosition& from, int64_t until,
                              const ModelState& snapshot);

  Backend& be_;
  Model& model_;
  const Dataset& train_;
  TrainerOptions opt_;
  std::unique_ptr<DeviceDataset> test_dev_;
  std::unique_ptr<BatchStream> stream_;  // loader thread + pinned staging ring, for all epochs
  Buffer inputs_[2];  // device input slots, alternating so upload i+1 overlaps step i
  uint64_t slot_free_event_[2] = {0, 0};
  Buffer metrics_;  // kMetricCount doubles on the backend
  // --log-interval: host staging slots the running metrics are copied into,
  // the downloads in flight (oldest first), and the last interval's end.
  struct PendingInterval {
    uint64_t download;
    int slot;
    int64_t step;
    std::chrono::steady_clock::time_point issued;
  };
  static constexpr int kIntervalSlots = 16;
  Buffer interval_host_;
  std::deque<PendingInterval> pending_;
  int next_interval_slot_ = 0;
  PendingInterval last_interval_{};
  double last_interval_sums_[kMetricCount] = {0, 0};
  std::unique_ptr<Graph> graphs_[2];
  std::atomic<bool> stop_requested_{false};
  bool stopped_early_ = false;
  TrainPosition position_;
  std::string graph_fallback_;
};

}  // namespace mlp
