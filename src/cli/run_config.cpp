// RunConfig -> what the Trainer and the Model are built from (see run_config.h).
#include "cli/run_config.h"

#include "mlp/dataset.h"

namespace mlp::cli {

TrainerOptions trainer_options(const RunConfig& c) {
  TrainerOptions t;
  t.epochs = c.epochs;
  t.batch_size = c.batch_size;
  t.seed = c.seed;
  t.use_graph = c.use_graph;
  if (c.profile_steps > 0) {
    t.epochs = int64_t{1} << 40;  // the step limit ends the run
    t.max_steps = c.profile_steps;
    t.evaluate = false;
    t.locate_nonfinite = false;
  }
  return t;
}

std::vector<int64_t> layer_sizes(const RunConfig& c, int64_t inputs) {
  std::vector<int64_t> sizes{inputs};
  sizes.insert(sizes.end(), c.hidden.begin(), c.hidden.end());
  sizes.push_back(kClasses);
  return sizes;
}

}  // namespace mlp::cli
