// train's checkpoint flags (--save, --checkpoint-every, --resume) and what they
// do: validation before any work, applying a checkpoint's configuration on
// resume (flags the user gave must agree with it), building a checkpoint from
// a run (the glue between the Trainer and the file format in src/io), and a
// TrainListener that saves at epoch ends. Saves are atomic; a non-finite
// state is never saved.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "cli/reporter.h"
#include "cli/run_config.h"
#include "mlp/checkpoint.h"
#include "mlp/dataset.h"
#include "mlp/trainer.h"

namespace mlp::cli {

struct CheckpointOptions {
  std::string save;    // --save PATH: at the end, every N epochs, and on Ctrl-C
  int64_t every = 0;   // --checkpoint-every N (epochs); needs --save
  std::string resume;  // --resume PATH
};

void add_checkpoint_options(CLI::App* app, CheckpointOptions& o);

// Fails before any work: --save's directory must exist and be writable, and
// --profile-steps runs save nothing.
void check_checkpoint_options(const CheckpointOptions& o, const RunConfig& cfg);

// Loads --resume into cfg: options the user gave (app) must equal the
// checkpoint's values, else Error(kCheckpoint) naming the option; the others
// take the checkpoint's. --epochs must exceed the epochs already done.
Checkpoint apply_resume(const CheckpointOptions& o, const CLI::App& app, RunConfig& cfg);
// --lr-* flags given on resume must describe the checkpoint's schedule.
void check_resume_schedule(const Checkpoint& c, const std::string& path, const CLI::App& app,
                           const ScheduleFlags& flags);
// "lr 0.001 x 0.7 every 1 epoch, 100 warm-up steps" (header, messages)
std::string describe_schedule(const LrSchedule& s, const AdamHyper& adam, int64_t steps_per_epoch);
// The training data must be what the checkpoint was trained on.
void check_resume_data(const Checkpoint& c, const std::string& path, const Dataset& train);

// The checkpoint of `model` (its state is downloaded), trained with `cfg` on
// `train`, standing at `pos`.
Checkpoint make_checkpoint(const RunConfig& cfg, const Model& model, const Dataset& train,
                           const TrainPosition& pos);
TrainPosition checkpoint_position(const Checkpoint& c);
// CRC32 of the training labels: cheap, and tells MNIST from Fashion-MNIST or a subset.
uint32_t labels_crc32(const Dataset& data);

class CheckpointSaver final : public TrainListener {
 public:
  CheckpointSaver(Reporter& report, const CheckpointOptions& o, const RunConfig& cfg,
                  const Model& model, const Dataset& train, const Trainer& trainer);
  bool enabled() const { return !opt_.save.empty(); }
  // Saves the model at `pos` to --save (unless that position is already saved).
  void save(const TrainPosition& pos);

  bool on_epoch_end(const EpochStats& s) override;  // every --checkpoint-every epochs

 private:
  Reporter& report_;
  const CheckpointOptions& opt_;
  const RunConfig& cfg_;
  const Model& model_;
  const Dataset& train_;
  const Trainer& trainer_;
  int64_t saved_step_ = -1;  // global step of the last save
};

}  // namespace mlp::cli
