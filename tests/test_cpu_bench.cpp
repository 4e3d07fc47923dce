// The CPU parts of the bench: the per-phase GEMM rates are the phase FLOPs
// over the phase times, which configurations --cpu-gemm all / --thread-sweep
// run, the peak restated per thread count, and `bench --json` with
// --cpu-gemm all, --thread-sweep and --neighbour end to end (keys and rows,
// never speed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "cpu/cpu_topology.h"
#include "mlp/bench.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::run_cli;

TEST(CpuBench, PhaseGemmRatesAreThePhaseFlopsOverThePhaseTimes) {
  const Dataset data = synthetic_dataset(3, 600, 28, 28);
  BenchConfig cfg;
  cfg.sizes = {784, 32, 16, 10};
  cfg.batch = 50;
  cfg.steps = 4;
  cfg.warmup = 1;
  cfg.repeats = 1;
  auto cpu = make_cpu_backend({1});
  const BenchResult r = run_bench(*cpu, data, cfg, PeakInfo{100.0, 0.0, "test"});
  const StepFlops f = gemm_flops_per_step(cfg.sizes, cfg.batch);
  ASSERT_TRUE(r.phase_ms[kPhaseForwardGemm] > 0 && r.phase_ms[kPhaseBackwardGemm] > 0);
  EXPECT_TRUE(testing::near(r.forward_gemm_gflops,
                            f.forward / 1e9 / (r.phase_ms[kPhaseForwardGemm] / 1e3), 0, 1e-9));
  EXPECT_TRUE(testing::near(r.backward_gemm_gflops,
                            f.backward / 1e9 / (r.phase_ms[kPhaseBackwardGemm] / 1e3), 0, 1e-9));
}

TEST(CpuBench, RunsAreResolvedWithTheBaseFirst) {
  const auto one = cpu_bench_runs(CpuOptions{3, CpuGemm::kOpenblas}, false, false);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].threads, 3);
  EXPECT_EQ(one[0].gemm, CpuGemm::kOpenblas);

  const auto both = cpu_bench_runs(CpuOptions{2, CpuGemm::kDefault}, true, false);
  ASSERT_EQ(both.size(), onednn_compiled() ? 2u : 1u);
  EXPECT_EQ(both[0].gemm, resolve_cpu_gemm(CpuGemm::kDefault));
  if (onednn_compiled()) {
    EXPECT_EQ(both[1].gemm, CpuGemm::kOpenblas);
  }

  const int cores = cpu::physical_cores();
  const auto sweep = cpu_bench_runs(CpuOptions{0, CpuGemm::kOpenblas}, false, true);
  ASSERT_EQ(static_cast<int>(sweep.size()), cores);
  EXPECT_EQ(sweep[0].threads, cores);
  std::set<int> counts;
  for (const CpuOptions& o : sweep) counts.insert(o.threads);
  EXPECT_EQ(static_cast<int>(counts.size()), cores);
  EXPECT_EQ(*counts.begin(), 1);

  // Every row keeps the subnormal mode asked for (--denormals keep).
  CpuOptions keep{0, CpuGemm::kDefault};
  keep.flush_denormals = false;
  for (const CpuOptions& o : cpu_bench_runs(keep, true, true)) EXPECT_FALSE(o.flush_denormals);
}

TEST(CpuBench, PeakIsRestatedPerThread) {
  const PeakInfo p{400.0, 0.0, "measured"};
  EXPECT_EQ(scale_cpu_peak(p, 2, 1).gflops, 200.0);
  EXPECT_EQ(scale_cpu_peak(p, 2, 2).gflops, 400.0);
  EXPECT_EQ(scale_cpu_peak(p, 2, 2).source, "measured");
}

TEST(CpuBench, TheHigherOfTwoPeakMeasurementsIsKeptAndEveryCpuRowRestated) {
  const PeakInfo before{180.0, 0.0, "measured"}, after{240.0, 0.0, "measured"};
  const PeakInfo p = higher_cpu_peak(before, after);
  EXPECT_EQ(p.gflops, 240.0);
  EXPECT_TRUE(testing::contains(p.source, "180.0 before the runs and 240.0 after")) << p.source;
  EXPECT_EQ(higher_cpu_peak(after, before).gflops, 240.0) << "either order";
  const PeakInfo unknown{0.0, 0.0, "unknown"};
  EXPECT_EQ(higher_cpu_peak(unknown, unknown).source, "unknown") << "nothing to compare";

  std::vector<BenchResult> rows(3);
  rows[0].device = rows[1].device = "cpu";
  rows[0].threads = 2;
  rows[1].threads = 1;
  rows[2].device = "cuda";
  rows[2].peak_gflops = 50000.0;
  restate_cpu_peak(rows, p, 2);
  EXPECT_EQ(rows[0].peak_gflops, 240.0);
  EXPECT_EQ(rows[1].peak_gflops, 120.0) << "one thread: half of two threads' peak";
  EXPECT_EQ(rows[2].peak_gflops, 50000.0) << "the GPU row keeps its own peak";
}

TEST(CpuBench, JsonShowsEveryLibraryThreadCountAndTheNeighbour) {
  const CommandResult r = run_cli({"bench", "--device", "cpu", "--synthetic", "--steps", "2",
                                   "--warmup", "1", "--repeats", "1", "--hidden", "64,32",
                                   "--cpu-gemm", "all", "--thread-sweep", "--neighbour", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const int cores = cpu::physical_cores();
  const std::size_t libs = onednn_compiled() ? 2 : 1;
  ASSERT_EQ(j.at("results").size(), libs * static_cast<std::size_t>(cores)) << j.dump(2);
  std::set<std::pair<std::string, int>> seen;
  for (const auto& row : j.at("results")) {
    seen.insert({row.at("cpu_gemm").get<std::string>(), row.at("threads").get<int>()});
    for (const char* k : {"forward_gemm_gflops", "backward_gemm_gflops", "forward_gemm_peak_share",
                          "backward_gemm_peak_share", "gemm_peak_share", "peak_share"})
      EXPECT_TRUE(row.contains(k)) << "missing " << k;
    EXPECT_TRUE(row.at("forward_gemm_gflops").get<double>() > 0);
  }
  EXPECT_EQ(seen.size(), j.at("results").size()) << "each configuration once";
  EXPECT_EQ(j["results"][0].at("cpu_gemm"), cpu_gemm_name(CpuGemm::kDefault));
  // The peak, measured before and after the runs: every row's share is of the higher.
  const auto& peak = j.at("peaks").at("cpu");
  if (peak.at("gflops").get<double>() > 0) {
    const double before = peak.at("gflops_before_runs").get<double>();
    const double after = peak.at("gflops_after_runs").get<double>();
    EXPECT_EQ(peak.at("gflops").get<double>(), std::max(before, after));
    for (const auto& row : j.at("results"))
      EXPECT_TRUE(testing::near(row.at("peak_gflops").get<double>(),
                                std::max(before, after) * row.at("threads").get<int>() / cores, 0,
                                1e-12))
          << row.dump();
  }
  const auto& n = j.at("neighbour");
  EXPECT_EQ(n.at("threads").get<int>(), cores);
  const double ratio = n.at("ratio").get<double>();
  EXPECT_TRUE(std::isfinite(ratio) && ratio > 0) << n.dump();
}

TEST(CpuBench, UnknownGemmIsAUsageError) {
  EXPECT_EQ(run_cli({"bench", "--cpu-gemm", "blis"}).exit_code, 2);
  EXPECT_EQ(run_cli({"train", "--cpu-gemm", "all"}).exit_code, 2);  // bench only
}

}  // namespace
}  // namespace mlp
