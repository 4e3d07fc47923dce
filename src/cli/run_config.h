// RunConfig: what `train` was asked for — every setting that shapes a run, as
// the start event and the checkpoint record it and a resume checks it. The
// Trainer sees only the part it reads (trainer_options).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/model.h"
#include "mlp/optimizer.h"
#include "mlp/trainer.h"

namespace mlp::cli {

struct RunConfig {
  std::string data_dir = "data/mnist";
  int64_t epochs = 10;
  int64_t batch_size = 100;
  AdamHyper adam;
  std::vector<int64_t> hidden{500, 500, 500};
  InitScheme init = InitScheme::kHe;
  uint64_t seed = 1;
  bool binarize = false;
  bool use_graph = true;
  int64_t profile_steps = 0;  // --profile-steps N: a short run for a profiler capture
  int64_t log_interval = 50;  // --log-interval N steps (0: per epoch only)
  LrSchedule schedule;        // in steps, from ScheduleFlags once the data is loaded
};

// --lr-schedule and its flags as the user gives them (--lr-step in epochs).
struct ScheduleFlags {
  std::string kind = "constant";  // constant | step | cosine
  float gamma = 0.7f;             // step: lr *= gamma every step_epochs epochs
  int64_t step_epochs = 1;
  int64_t warmup_steps = 0;  // linear warm-up from lr / warmup to lr, any kind
  float min_lr = 0.0f;       // cosine: the floor it anneals to at the run's end
};

// The schedule in optimizer steps: step_size = step_epochs * steps_per_epoch,
// cosine's total_steps = epochs * steps_per_epoch. Error(kUsage) on a bad kind.
LrSchedule make_schedule(const ScheduleFlags& f, int64_t epochs, int64_t steps_per_epoch);
// "constant", "step", "cosine"
const char* schedule_name(LrScheduleKind k);

// A --profile-steps run trains exactly that many steps (across epoch ends if
// need be), evaluates nothing and keeps no per-epoch host snapshot, so the
// capture holds training steps only.
TrainerOptions trainer_options(const RunConfig& c);

// The start event's fields that every engine's run has (the version, device,
// data, model, seed, ...); each engine's header adds its own.
nlohmann::json start_fields(const RunConfig& c, const Backend& backend, const Dataset& train,
                            const Dataset& test, const Model& model, int64_t steps_per_epoch);

// {inputs, hidden..., classes}
std::vector<int64_t> layer_sizes(const RunConfig& c, int64_t inputs);

}  // namespace mlp::cli
