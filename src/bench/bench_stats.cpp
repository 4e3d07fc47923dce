// See bench/bench_stats.h.
#include "bench/bench_stats.h"

#include <fmt/format.h>

#include <algorithm>

#include "mlp/error.h"

namespace mlp {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void check_bench_config(const BenchConfig& cfg, const Dataset& data) {
  if (cfg.steps <= 0 || cfg.repeats <= 0 || cfg.warmup < 0)
    throw usage_error("bench: --steps and --repeats must be positive, --warmup not negative");
  if (cfg.batch > data.count)
    throw usage_error(fmt::format("bench: --batch-size {} is larger than the data ({} samples)",
                                  cfg.batch, data.count));
}

}  // namespace mlp
