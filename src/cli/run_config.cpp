// RunConfig -> what the Trainer and the Model are built from (see run_config.h).
#include "cli/run_config.h"

#include <fmt/format.h>

#include "mlp/dataset.h"
#include "mlp/error.h"

namespace mlp::cli {

TrainerOptions trainer_options(const RunConfig& c) {
  TrainerOptions t;
  t.epochs = c.epochs;
  t.batch_size = c.batch_size;
  t.seed = c.seed;
  t.use_graph = c.use_graph;
  t.log_interval = c.log_interval;
  if (c.profile_steps > 0) {
    t.epochs = int64_t{1} << 40;  // the step limit ends the run
    t.max_steps = c.profile_steps;
    t.evaluate = false;
    t.locate_nonfinite = false;
  }
  return t;
}

nlohmann::json start_fields(const RunConfig& c, const Backend& backend, const Dataset& train,
                            const Dataset& test, const Model& model, int64_t steps_per_epoch) {
  return {{"version", MLP_VERSION},
          {"device", backend_kind_name(backend.kind())},
          {"backend", backend.describe()},
          {"data", c.data_dir},
          {"train_samples", train.count},
          {"test_samples", test.count},
          {"layers", model.layout().sizes()},
          {"parameters", model.layout().parameter_count()},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"steps_per_epoch", steps_per_epoch},
          {"lr", c.adam.lr},
          {"init", init_name(c.init)},
          {"seed", c.seed},
          {"binarize", c.binarize}};
}

LrSchedule make_schedule(const ScheduleFlags& f, int64_t epochs, int64_t steps_per_epoch) {
  LrSchedule s;
  if (f.kind == "constant")
    s.kind = LrScheduleKind::kConstant;
  else if (f.kind == "step")
    s.kind = LrScheduleKind::kStep;
  else if (f.kind == "cosine")
    s.kind = LrScheduleKind::kCosine;
  else
    throw usage_error(fmt::format(
        "--lr-schedule: unknown schedule '{}' (expected constant, step or cosine)", f.kind));
  s.warmup_steps = f.warmup_steps;
  if (s.kind == LrScheduleKind::kStep) {
    s.gamma = f.gamma;
    s.step_size = f.step_epochs * steps_per_epoch;
  }
  if (s.kind == LrScheduleKind::kCosine) {
    s.total_steps = epochs * steps_per_epoch;
    s.min_lr = f.min_lr;
  }
  return s;
}

const char* schedule_name(LrScheduleKind k) {
  switch (k) {
    case LrScheduleKind::kStep:
      return "step";
    case LrScheduleKind::kCosine:
      return "cosine";
    case LrScheduleKind::kConstant:
    default:
      return "constant";
  }
}

std::vector<int64_t> layer_sizes(const RunConfig& c, int64_t inputs) {
  std::vector<int64_t> sizes{inputs};
  sizes.insert(sizes.end(), c.hidden.begin(), c.hidden.end());
  sizes.push_back(kClasses);
  return sizes;
}

}  // namespace mlp::cli
