// Trainer: the epoch loop. Streams batches through BatchStream, replays the
// captured training step (or issues it eagerly), keeps loss and accuracy on
// the backend until the epoch ends, then evaluates on the test set. Knows
// nothing about CUDA: everything device-specific sits behind Backend.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/batch_stream.h"
#include "mlp/dataset.h"
#include "mlp/model.h"

namespace mlp {

struct TrainConfig {
  std::string data_dir = "data/mnist";
  int64_t epochs = 10;
  int64_t batch_size = 100;
  AdamHyper adam;
  std::vector<int64_t> hidden{500, 500, 500};
  InitScheme init = InitScheme::kHe;
  uint64_t seed = 1;
  bool binarize = false;
  bool use_graph = true;      // capture the step once and replay it
  int64_t profile_steps = 0;  // >0: run this many steps inside profiler_start/stop, then stop
};

struct EpochStats {
  int64_t epoch = 0;          // 1-based, as printed
  int64_t steps = 0;          // optimizer steps in this epoch
  double loss = 0;            // mean training loss over the epoch's samples
  double train_accuracy = 0;  // on the training batches as they were seen
  double test_loss = 0;
  double test_accuracy = 0;
  double seconds = 0;  // training time, test evaluation excluded
  double samples_per_sec = 0;
};

struct EvalResult {
  int64_t count = 0;
  double loss = 0;
  double accuracy = 0;
  std::array<std::array<int64_t, kClasses>, kClasses> confusion{};  // [true][predicted]
};

// A dataset copied into backend memory once, so evaluation needs no per-batch upload.
class DeviceDataset {
 public:
  DeviceDataset(Backend& backend, const Dataset& data);
  const Dataset& host() const { return data_; }
  const uint8_t* images() const { return images_.as<uint8_t>(); }
  const uint8_t* labels() const { return labels_.as<uint8_t>(); }

 private:
  const Dataset& data_;
  Buffer images_, labels_;
};

// Loss, accuracy and confusion matrix of the model over a whole dataset.
EvalResult evaluate(Backend& backend, Model& model, const DeviceDataset& data);

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
  // Return false to stop training after this epoch.
  virtual bool on_epoch_end(const EpochStats& /*stats*/) { return true; }
};

class Trainer {
 public:
  Trainer(Backend& backend, Model& model, const Dataset& train, const Dataset* test,
          const TrainConfig& cfg);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  int64_t steps_per_epoch() const;
  // Trains epochs first_epoch+1 .. cfg.epochs (first_epoch > 0 when resuming).
  // Throws Error(kNonFinite) when the epoch's loss is not finite, naming the
  // first step whose loss was not (found by replaying the epoch; see trainer.cpp).
  std::vector<EpochStats> run(TrainListener& listener, int64_t first_epoch = 0);
  // The same from any position (a resumed checkpoint); the model must hold the
  // state saved at that position. An epoch cut short by request_stop() gets no
  // on_epoch_end() and no test evaluation.
  std::vector<EpochStats> run(TrainListener& listener, const TrainPosition& start);
  // Async-signal-safe: the loop stops after the step in progress.
  void request_stop() { stop_requested_.store(true); }
  bool stopped_early() const { return stopped_early_; }
  // Where the last run() stopped (all epochs done, or the step after a stop).
  const TrainPosition& position() const { return position_; }

 private:
  EpochStats train_epoch(int64_t epoch, const TrainPosition& from, TrainListener& listener);
  void issue_step(BatchStream& stream, int64_t index);
  int64_t find_nonfinite_step(int64_t epoch, const TrainPosition& from, int64_t until,
                              const ModelState& snapshot);

  Backend& be_;
  Model& model_;
  const Dataset& train_;
  const Dataset* test_;
  TrainConfig cfg_;
  std::unique_ptr<DeviceDataset> test_dev_;
  std::unique_ptr<BatchStream> stream_;  // loader thread + pinned staging ring, for all epochs
  Buffer inputs_[2];  // device input slots, alternating so upload i+1 overlaps step i
  uint64_t slot_free_event_[2] = {0, 0};
  Buffer metrics_;  // kMetricCount doubles on the backend
  std::unique_ptr<Graph> graphs_[2];
  std::atomic<bool> stop_requested_{false};
  bool stopped_early_ = false;
  TrainPosition position_;
};

}  // namespace mlp
