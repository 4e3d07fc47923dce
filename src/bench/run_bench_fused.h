// run_bench_fused: `bench --engine fused`'s rows. Throughput from the real loop (FusedTrainer:
// the data on the device, up to 100 steps per cooperative launch), like run_bench's from
// Trainer; no phase breakdown (one kernel runs every phase). The latency floor the rows are
// compared with is kLatencyFloorUs per step, for both engines.
#pragma once

#include "mlp/backend.h"
#include "mlp/bench.h"
#include "mlp/dataset.h"

namespace mlp {

// The step's latency floor at batch 100: ~10 dependent stages (4 forward layers, the loss,
// 3 dX, the last dW, Adam), each needing on the order of 1 µs to synchronise across the GPU,
// whatever does the arithmetic (~7 µs of FP32 at H100/H200 peak, spread over those stages).
inline constexpr double kLatencyFloorUs = 10.0;

// As run_bench (cfg.use_graph ignored; phases left 0). Throws Error(kDevice, "--engine fused:
// ...") when the shape or the device is not supported.
BenchResult run_bench_fused(Backend& backend, const Dataset& data, const BenchConfig& cfg,
                            const PeakInfo& peak);

}  // namespace mlp
