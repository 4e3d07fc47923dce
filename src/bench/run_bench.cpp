// run_bench: the measurement behind `mnist-mlp bench` (see include/mlp/bench.h).
// Two runs per repeat, back to back so machine noise hits both:
//   1. throughput: Trainer, exactly as `train` runs (loader thread, async upload,
//      graph replay unless disabled), `steps` steps -> samples/s;
//   2. phases: the same model stepped eagerly with a timestamp between phases and
//      around each GEMM (Backend::set_gemm_spans), synchronised per step -> where
//      time goes.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "bench/bench_stats.h"
#include "mlp/bench.h"
#include "mlp/error.h"
#include "mlp/model.h"
#include "mlp/rng.h"
#include "mlp/trainer.h"

namespace mlp {
namespace {

// Per-step mean of each phase over `steps` eager steps. Batches are taken in
// order from the dataset (the shuffle is the loader's business, not timed here).
void time_phases(Backend& be, Model& model, const Dataset& data, int64_t batch, int64_t steps,
                 int64_t first_step, double* mean_ms) {
  const int64_t pixels = data.pixels();
  const auto slot = static_cast<std::size_t>(batch * (pixels + 1));
  Buffer staging = be.alloc_host(slot);
  Buffer input = be.alloc(slot);
  Buffer metrics = be.alloc(kMetricCount * sizeof(double));
  const uint8_t* images = input.as<uint8_t>();
  const uint8_t* labels = images + batch * pixels;
  double sum[kPhaseCount] = {};
  std::vector<GemmSpan> spans;
  const auto gemm_ms = [&](std::size_t from, std::size_t to) {
    double ms = 0;
    for (std::size_t i = from; i < to; ++i) ms += be.elapsed_ms(spans[i].from, spans[i].to);
    return ms;
  };
  be.synchronize();
  be.set_gemm_spans(&spans);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t first = ((first_step + s) * batch) % (data.count - batch + 1);
    std::memcpy(staging.data(), data.images.data() + first * pixels,
                static_cast<std::size_t>(batch * pixels));
    std::memcpy(staging.as<uint8_t>() + batch * pixels, data.labels.data() + first,
                static_cast<std::size_t>(batch));
    spans.clear();
    const uint64_t t0 = be.record_timestamp();
    const uint64_t fence =
        be.upload_async(input.data(), staging.data(), slot, be.record_compute_event());
    const uint64_t t1 = be.record_timestamp();  // compute waits for the copy first
    model.forward(images, batch);
    const std::size_t forward_gemms = spans.size();
    const uint64_t t2 = be.record_timestamp();
    model.backward(labels, batch, metrics.as<double>());
    const uint64_t t3 = be.record_timestamp();
    model.update();
    const uint64_t t4 = be.record_timestamp();
    be.wait_fence(fence);  // staging is rewritten next step

    const double fwd_gemm = gemm_ms(0, forward_gemms),
                 bwd_gemm = gemm_ms(forward_gemms, spans.size());
    const double fwd = be.elapsed_ms(t1, t2), bwd = be.elapsed_ms(t2, t3);
    sum[kPhaseCopy] += be.elapsed_ms(t0, t1);
    sum[kPhaseForwardGemm] += fwd_gemm;
    sum[kPhaseForwardOther] += std::max(0.0, fwd - fwd_gemm);
    sum[kPhaseBackwardGemm] += bwd_gemm;
    sum[kPhaseBackwardOther] += std::max(0.0, bwd - bwd_gemm);
    sum[kPhaseUpdate] += be.elapsed_ms(t3, t4);
  }
  be.set_gemm_spans(nullptr);
  for (int p = 0; p < kPhaseCount; ++p) mean_ms[p] = sum[p] / static_cast<double>(steps);
}

}  // namespace

StepFlops gemm_flops_per_step(const std::vector<int64_t>& sizes, int64_t batch) {
  StepFlops f;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const double layer = 2.0 * static_cast<double>(batch) * static_cast<double>(sizes[l]) *
                         static_cast<double>(sizes[l + 1]);
    f.forward += layer;              // Y = X * W
    f.backward += layer;             // dW = X^T * dY
    if (l > 0) f.backward += layer;  // dX = dY * W^T (none for the images)
  }
  return f;
}

const char* phase_name(int phase) {
  static const char* const kNames[kPhaseCount] = {
      "copy", "forward_gemm", "forward_other", "backward_gemm", "backward_other", "update"};
  return phase >= 0 && phase < kPhaseCount ? kNames[phase] : "?";
}

Dataset synthetic_dataset(uint64_t seed, int64_t count, int64_t rows, int64_t cols) {
  Dataset d;
  d.count = count;
  d.rows = rows;
  d.cols = cols;
  d.images.resize(static_cast<std::size_t>(count * rows * cols));
  d.labels.resize(static_cast<std::size_t>(count));
  Pcg32 rng(seed, 0xda7a);
  for (auto& px : d.images) px = static_cast<uint8_t>(rng.next() >> 24);
  for (auto& l : d.labels) l = static_cast<uint8_t>(rng.below(kClasses));
  d.images_path = d.labels_path = "synthetic";
  return d;
}

BenchResult run_bench(Backend& backend, const Dataset& data, const BenchConfig& cfg,
                      const PeakInfo& peak) {
  check_bench_config(cfg, data);
  Model model(backend, cfg.sizes, cfg.batch, cfg.adam, /*binarize=*/false);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, cfg.seed));

  // Each run() trains `steps` steps of one epoch; the bench never evaluates and,
  // a healthy loss being checked below anyway, keeps no per-epoch snapshot.
  TrainerOptions to;
  to.batch_size = cfg.batch;
  to.seed = cfg.seed;
  to.use_graph = cfg.use_graph;
  to.epochs = int64_t{1} << 40;
  to.evaluate = false;
  to.locate_nonfinite = false;
  const int64_t steps_per_epoch = data.count / cfg.batch;
  const int64_t steps = std::min(cfg.steps, steps_per_epoch);
  if (cfg.warmup > 0) {
    TrainerOptions warm_opt = to;
    warm_opt.max_steps = std::min(cfg.warmup, steps_per_epoch);
    Trainer warm(backend, model, data, nullptr, warm_opt);
    warm.run({});
    double ignored[kPhaseCount];
    time_phases(backend, model, data, cfg.batch, std::min(cfg.warmup, steps), 0, ignored);
  }
  to.max_steps = steps;
  Trainer trainer(backend, model, data, nullptr, to);

  BenchResult r;
  r.device = backend_kind_name(backend.kind());
  r.backend = backend.describe();
  r.batch = cfg.batch;
  r.steps = steps;
  r.repeats = cfg.repeats;
  std::vector<double> sps;
  std::vector<double> phases[kPhaseCount];
  for (int rep = 0; rep < cfg.repeats; ++rep) {
    TrainPosition at;
    at.epoch = rep + 1;  // a fresh epoch (and shuffle) per repeat
    const std::vector<EpochStats> run = trainer.run({}, at);
    if (run.empty() || run[0].steps != steps)
      throw Error(ExitCode::kFailure, "bench: the training loop stopped early");
    sps.push_back(run[0].samples_per_sec);
    r.loss = run[0].loss;
    double ms[kPhaseCount];
    time_phases(backend, model, data, cfg.batch, steps, (rep + 1) * steps, ms);
    for (int p = 0; p < kPhaseCount; ++p) phases[p].push_back(ms[p]);
  }

  r.samples_per_sec = median(sps);
  r.samples_per_sec_min = *std::min_element(sps.begin(), sps.end());
  r.samples_per_sec_max = *std::max_element(sps.begin(), sps.end());
  r.step_ms = 1000.0 * static_cast<double>(cfg.batch) / r.samples_per_sec;
  r.epoch_seconds = 60000.0 / r.samples_per_sec;
  for (int p = 0; p < kPhaseCount; ++p) {
    r.phase_ms[p] = median(phases[p]);
    r.phase_total_ms += r.phase_ms[p];
  }
  r.gemm_ms = r.phase_ms[kPhaseForwardGemm] + r.phase_ms[kPhaseBackwardGemm];
  r.gemm_share = r.phase_total_ms > 0 ? r.gemm_ms / r.phase_total_ms : 0;
  r.gflop_per_step = gemm_flops_per_step(cfg.sizes, cfg.batch).total() / 1e9;
  r.gflops = r.gflop_per_step * r.samples_per_sec / static_cast<double>(cfg.batch);
  r.gemm_gflops = r.gemm_ms > 0 ? r.gflop_per_step / (r.gemm_ms / 1e3) : 0;
  const StepFlops flops = gemm_flops_per_step(cfg.sizes, cfg.batch);
  const double fwd_ms = r.phase_ms[kPhaseForwardGemm], bwd_ms = r.phase_ms[kPhaseBackwardGemm];
  r.forward_gemm_gflops = fwd_ms > 0 ? flops.forward / 1e9 / (fwd_ms / 1e3) : 0;
  r.backward_gemm_gflops = bwd_ms > 0 ? flops.backward / 1e9 / (bwd_ms / 1e3) : 0;
  r.peak_gflops = peak.gflops;
  return r;
}

}  // namespace mlp
