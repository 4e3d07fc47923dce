// bench --engine fused|all: the fused rows beside the cublas ones, and the engines' table and
// JSON (µs per step, projected epoch ms, share of the latency floor kLatencyFloorUs).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mlp/backend.h"
#include "mlp/bench.h"
#include "mlp/dataset.h"

namespace mlp::cli {

using EngineRows = std::vector<std::pair<std::string, BenchResult>>;  // (engine, row)

// The fused row of one backend and batch, appended to *rows; or a `skipped` entry: the CPU
// emulation under --device all (a test oracle, slow at the MNIST shape), or, in a sweep, a
// batch the fused plan does not support. Other errors propagate.
void add_fused_row(Backend& be, const Dataset& data, const BenchConfig& c, const PeakInfo& peak,
                   bool device_all, bool sweep, EngineRows* rows, nlohmann::json* skipped);

void print_engine_table(const EngineRows& rows);
nlohmann::json engines_json(const EngineRows& rows);

}  // namespace mlp::cli
