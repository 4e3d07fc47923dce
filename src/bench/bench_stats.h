// What the bench's measurements share (src/bench/*.cpp): the median every figure
// is reported as, and the check of a bench configuration against its data.
#pragma once

#include <vector>

#include "mlp/bench.h"
#include "mlp/dataset.h"

namespace mlp {

// The median of v; 0 when v is empty. Every bench figure is a median over
// repeats, because the machines it runs on are shared.
double median(std::vector<double> v);

// Error(kUsage) naming the flag when cfg cannot run on data: --steps or
// --repeats not positive, --warmup negative, --batch-size above the samples.
void check_bench_config(const BenchConfig& cfg, const Dataset& data);

}  // namespace mlp
