// --engine cublas|fused (bench: also all): which engine computes a training step. cublas, the
// default, is the Model on the chosen backend (cuBLAS + our kernels on CUDA, BLAS on the CPU);
// fused is the experimental whole-step persistent kernel (docs/fused-engine.md), whose CPU
// emulation runs with --device cpu. One helper adds the flag with the same help everywhere and
// refuses, with exit 6 and the reason, the combinations the fused engine does not support.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/device_flags.h"

namespace mlp::cli {

struct EngineFlag {
  std::string name = "cublas";  // cublas | fused | all (bench only)
  bool fused() const { return name == "fused"; }
  bool cublas() const { return name == "cublas"; }
};

void add_engine_flag(CLI::App* app, EngineFlag& f, bool bench_choices = false);

// With --engine fused (or all): Error(kDevice, "--engine fused: ...") for --tf32 (there is no
// TF32 path yet) and --no-graph (the fused engine replays no CUDA Graph: one cooperative
// launch runs many steps, so the flag would mean nothing). No-op for --engine cublas.
void check_engine_flags(const EngineFlag& e, const DeviceFlags& d, bool no_graph);

}  // namespace mlp::cli
