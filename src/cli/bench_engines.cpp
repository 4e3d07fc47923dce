// bench's engine rows (see bench_engines.h).
#include "cli/bench_engines.h"

#include <fmt/format.h>

#include "bench/run_bench_fused.h"
#include "mlp/error.h"

namespace mlp::cli {

void add_fused_row(Backend& be, const Dataset& data, const BenchConfig& c, const PeakInfo& peak,
                   bool device_all, bool sweep, EngineRows* rows, nlohmann::json* skipped) {
  const std::string dev = backend_kind_name(be.kind());
  if (dev == "cpu" && device_all) {
    const std::string why =
        "the CPU emulation is a test oracle, not an engine to time at this shape; ask for it "
        "with --device cpu";
    if (skipped->empty() || skipped->back().value("engine", "") != "fused")
      fmt::print(stderr, "skip   fused cpu: {}\n", why);
    skipped->push_back(
        {{"device", dev}, {"engine", "fused"}, {"batch_size", c.batch}, {"reason", why}});
    return;
  }
  fmt::print(stderr, "bench: fused {} batch {} ({} steps x {})...\n", dev, c.batch, c.steps,
             c.repeats);
  try {
    rows->emplace_back("fused", run_bench_fused(be, data, c, peak));
  } catch (const Error& e) {
    if (e.code() != ExitCode::kDevice || !sweep) throw;
    skipped->push_back(
        {{"device", dev}, {"engine", "fused"}, {"batch_size", c.batch}, {"reason", e.what()}});
    fmt::print(stderr, "skip   fused {} batch {}: {}\n", dev, c.batch, e.what());
  }
}

void print_engine_table(const EngineRows& rows) {
  fmt::print(
      "\nengines: us per step against the latency floor of {:.0f} us (~10 dependent "
      "stages x ~1 us)\n",
      kLatencyFloorUs);
  fmt::print("{:<7} {:<6} {:>5} {:>10} {:>10} {:>12}\n", "engine", "device", "batch", "us/step",
             "epoch ms", "floor share");
  for (const auto& [engine, r] : rows)
    fmt::print("{:<7} {:<6} {:>5} {:>10.1f} {:>10.1f} {:>11.1f}%\n", engine, r.device, r.batch,
               1000 * r.step_ms, 1000 * r.epoch_seconds,
               100 * kLatencyFloorUs / (1000 * r.step_ms));
}

nlohmann::json engines_json(const EngineRows& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [engine, r] : rows)
    out.push_back({{"engine", engine},
                   {"device", r.device},
                   {"backend", r.backend},
                   {"batch_size", r.batch},
                   {"steps", r.steps},
                   {"repeats", r.repeats},
                   {"samples_per_sec", r.samples_per_sec},
                   {"step_us", 1000 * r.step_ms},
                   {"epoch_ms", 1000 * r.epoch_seconds},
                   {"floor_us", kLatencyFloorUs},
                   {"floor_share", kLatencyFloorUs / (1000 * r.step_ms)},
                   {"gflops", r.gflops},
                   {"loss", r.loss}});
  return out;
}

}  // namespace mlp::cli
