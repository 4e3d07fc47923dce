// run_bench_fused (see run_bench_fused.h): warm-up, then cfg.repeats timed FusedTrainer runs of
// cfg.steps steps, each a fresh epoch (and shuffle); the median is reported.
#include "bench/run_bench_fused.h"

#include <fmt/format.h>

#include <algorithm>

#include "bench/bench_stats.h"
#include "fused/fused_trainer.h"
#include "mlp/error.h"
#include "mlp/model.h"

namespace mlp {

BenchResult run_bench_fused(Backend& backend, const Dataset& data, const BenchConfig& cfg,
                            const PeakInfo& peak) {
  check_bench_config(cfg, data);
  Model model(backend, cfg.sizes, 1, cfg.adam, /*binarize=*/false);  // holds the state only
  model.set_params(initial_params(model.layout(), InitScheme::kHe, cfg.seed));
  TrainerOptions to;
  to.batch_size = cfg.batch;
  to.seed = cfg.seed;
  to.epochs = int64_t{1} << 40;
  to.evaluate = false;
  to.locate_nonfinite = false;
  const int64_t steps = std::min(cfg.steps, data.count / cfg.batch);
  to.max_steps = steps;
  fused::FusedTrainer trainer(backend, model, false, data, nullptr, to);
  if (cfg.warmup > 0) {
    TrainerOptions warm = to;
    warm.max_steps = std::min(cfg.warmup, data.count / cfg.batch);
    fused::FusedTrainer(backend, model, false, data, nullptr, warm).run({});
  }

  BenchResult r;
  r.device = backend_kind_name(backend.kind());
  r.backend = trainer.describe();
  r.batch = cfg.batch;
  r.steps = steps;
  r.repeats = cfg.repeats;
  std::vector<double> sps;
  for (int rep = 0; rep < cfg.repeats; ++rep) {
    TrainPosition at;
    at.epoch = rep + 1;
    const std::vector<EpochStats> run = trainer.run({}, at);
    if (run.empty() || run[0].steps != steps)
      throw Error(ExitCode::kFailure, "bench: the fused training loop stopped early");
    sps.push_back(run[0].samples_per_sec);
    r.loss = run[0].loss;
  }
  r.samples_per_sec = median(sps);
  r.samples_per_sec_min = *std::min_element(sps.begin(), sps.end());
  r.samples_per_sec_max = *std::max_element(sps.begin(), sps.end());
  r.step_ms = 1000.0 * static_cast<double>(cfg.batch) / r.samples_per_sec;
  r.epoch_seconds = 60000.0 / r.samples_per_sec;
  r.gflop_per_step = gemm_flops_per_step(cfg.sizes, cfg.batch).total() / 1e9;
  r.gflops = r.gflop_per_step * r.samples_per_sec / static_cast<double>(cfg.batch);
  r.peak_gflops = peak.gflops;
  return r;
}

}  // namespace mlp
