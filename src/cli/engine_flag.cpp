// --engine (see engine_flag.h).
#include "cli/engine_flag.h"

#include "mlp/error.h"

namespace mlp::cli {

void add_engine_flag(CLI::App* app, EngineFlag& f, bool bench_choices) {
  if (bench_choices)
    app->add_option("--engine", f.name,
                    "cublas (the Model on the backend), fused (EXPERIMENTAL: the whole step in "
                    "one persistent kernel; its CPU emulation on --device cpu) or all (both)")
        ->capture_default_str()
        ->check(CLI::IsMember({"cublas", "fused", "all"}));
  else
    app->add_option("--engine", f.name,
                    "cublas (the Model on the backend) or fused (EXPERIMENTAL: the whole step in "
                    "one persistent kernel; its CPU emulation on --device cpu)")
        ->capture_default_str()
        ->check(CLI::IsMember({"cublas", "fused"}));
}

void check_engine_flags(const EngineFlag& e, const DeviceFlags& d, bool no_graph) {
  if (e.cublas()) return;
  if (d.tf32)
    throw device_error(
        "--engine fused: --tf32 is not supported yet (the fused kernel computes in FP32 only); "
        "drop --tf32 or use --engine cublas");
  if (no_graph)
    throw device_error(
        "--engine fused: --no-graph does not apply (the fused engine uses no CUDA Graph: one "
        "cooperative launch runs up to 100 steps); drop --no-graph");
}

}  // namespace mlp::cli
