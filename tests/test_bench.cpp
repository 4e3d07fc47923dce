// The bench machinery: the exact GEMM FLOP count, Backend::set_gemm_spans (a
// timestamp pair per GEMM while set, nothing otherwise), run_bench on the CPU
// (figures finite and consistent with each other), `mnist-mlp bench --json`
// end to end (keys, one row per sweep size, CUDA skipped or run as the build
// allows, --kernels' nodes and CPU schedule groups), and tools/plot writing a
// PNG. Behaviour, never speed.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mlp/bench.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::describe;
using testing::run_cli;
using testing::TempDir;

TEST(BenchFlops, CountsForwardDwAndDxExceptForTheInputLayer) {
  const int64_t b = 100;
  const StepFlops f = gemm_flops_per_step({784, 500, 500, 500, 10}, b);
  const double fwd = 2.0 * b * (784 * 500 + 500 * 500 + 500 * 500 + 500 * 10);
  const double dx = 2.0 * b * (500 * 500 + 500 * 500 + 500 * 10);  // no dX for the images
  EXPECT_EQ(f.forward, fwd);
  EXPECT_EQ(f.backward, fwd + dx);
  EXPECT_EQ(f.total(), 2 * fwd + dx);

  const StepFlops one = gemm_flops_per_step({3, 4}, 5);  // a single layer has no dX at all
  EXPECT_EQ(one.forward, 2.0 * 5 * 3 * 4);
  EXPECT_EQ(one.backward, one.forward);
}

TEST(GemmSpans, OnePairPerGemmOnlyWhileSet) {
  auto cpu = make_cpu_backend({1});
  Backend& be = *cpu;
  const int64_t m = 64, k = 96, n = 80;
  const auto a = testing::random_floats(static_cast<std::size_t>(m * k), 1);
  const auto b = testing::random_floats(static_cast<std::size_t>(k * n), 2);
  testing::DeviceVec<float> da(be, a), db(be, b);
  Buffer c = be.alloc(static_cast<std::size_t>(m * n) * sizeof(float));
  const auto gemm = [&] {
    be.gemm(Trans::kNo, Trans::kNo, 1.0f, CMat{da.get(), m, k}, CMat{db.get(), k, n}, 0.0f,
            Mat{c.as<float>(), m, n});
  };

  std::vector<GemmSpan> spans;
  gemm();
  EXPECT_TRUE(spans.empty()) << "timing is off by default";
  be.set_gemm_spans(&spans);
  for (int i = 0; i < 20; ++i) gemm();
  ASSERT_EQ(spans.size(), 20u);
  double total = 0;
  for (const GemmSpan& s : spans) {
    EXPECT_LT(s.from, s.to);
    const double ms = be.elapsed_ms(s.from, s.to);
    EXPECT_TRUE(ms >= 0.0) << ms;
    total += ms;
  }
  EXPECT_TRUE(total > 0.0) << total;
  be.set_gemm_spans(nullptr);
  gemm();
  EXPECT_EQ(spans.size(), 20u) << "no span once unset";

  // The result is the plain sgemm's.
  std::vector<float> got(static_cast<std::size_t>(m * n)), want(got.size());
  be.download(got.data(), c.data(), got.size() * sizeof(float));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t q = 0; q < k; ++q) s += double{a[i * k + q]} * b[q * n + j];
      want[static_cast<std::size_t>(i * n + j)] = static_cast<float>(s);
    }
  EXPECT_TRUE(testing::all_near(got, want, 1e-4, 1e-4));
}

TEST(RunBench, CpuFiguresAreFiniteAndConsistent) {
  const Dataset data = synthetic_dataset(3, 600, 28, 28);
  BenchConfig cfg;
  cfg.sizes = {784, 32, 16, 10};
  cfg.batch = 50;
  cfg.steps = 4;
  cfg.warmup = 1;
  cfg.repeats = 3;
  auto cpu = make_cpu_backend({1});
  const PeakInfo peak{100.0, 0.0, "stated for the test"};
  const BenchResult r = run_bench(*cpu, data, cfg, peak);
  EXPECT_EQ(r.device, "cpu");
  EXPECT_EQ(r.steps, 4);
  EXPECT_EQ(r.repeats, 3);
  EXPECT_TRUE(std::isfinite(r.samples_per_sec) && r.samples_per_sec > 0) << r.samples_per_sec;
  EXPECT_TRUE(r.samples_per_sec_min <= r.samples_per_sec &&
              r.samples_per_sec <= r.samples_per_sec_max);
  EXPECT_TRUE(testing::near(r.epoch_seconds, 60000.0 / r.samples_per_sec, 0, 1e-12));
  EXPECT_TRUE(testing::near(r.step_ms, 1000.0 * 50 / r.samples_per_sec, 0, 1e-12));
  double sum = 0;
  for (double p : r.phase_ms) {
    EXPECT_TRUE(std::isfinite(p) && p >= 0) << p;
    sum += p;
  }
  EXPECT_TRUE(testing::near(r.phase_total_ms, sum, 0, 1e-12));
  EXPECT_TRUE(r.phase_ms[kPhaseForwardGemm] > 0 && r.phase_ms[kPhaseBackwardGemm] > 0);
  EXPECT_TRUE(r.gemm_share > 0 && r.gemm_share <= 1) << r.gemm_share;
  EXPECT_TRUE(
      testing::near(r.gflop_per_step, gemm_flops_per_step(cfg.sizes, 50).total() / 1e9, 0, 1e-12));
  EXPECT_TRUE(testing::near(r.gflops, r.gflop_per_step * r.samples_per_sec / 50, 0, 1e-9));
  EXPECT_EQ(r.peak_gflops, 100.0);
  EXPECT_TRUE(std::isfinite(r.loss) && r.loss > 0) << r.loss;
}

TEST(RunBench, StepsAreClampedToOneEpoch) {
  const Dataset data = synthetic_dataset(4, 200, 28, 28);
  BenchConfig cfg;
  cfg.sizes = {784, 8, 10};
  cfg.batch = 50;
  cfg.steps = 1000;
  cfg.warmup = 0;
  cfg.repeats = 1;
  auto cpu = make_cpu_backend({1});
  EXPECT_EQ(run_bench(*cpu, data, cfg, PeakInfo{}).steps, 4);
}

TEST(CpuPeak, IsPositiveOrSaysWhyNot) {
  const PeakInfo p = cpu_peak(1);
  EXPECT_FALSE(p.source.empty());
  if (p.gflops == 0) GTEST_SKIP() << "no FMA probe here: " << p.source;
  EXPECT_TRUE(std::isfinite(p.gflops) && p.gflops > 0.1) << p.gflops;
}

TEST(BenchCli, JsonHasEveryKeyAndSaysWhatRan) {
  const CommandResult r =
      run_cli({"bench", "--device", "all", "--synthetic", "--steps", "2", "--warmup", "1",
               "--repeats", "1", "--hidden", "64,32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << describe(r);
  EXPECT_EQ(j.at("data_source"), "synthetic");
  EXPECT_EQ(j.at("layers"), nlohmann::json({784, 64, 32, 10}));
  for (const char* k : {"version", "data", "threads", "steps", "warmup", "repeats", "graph", "tf32",
                        "sweep", "skipped", "peaks", "results", "denormals"})
    EXPECT_TRUE(j.contains(k)) << "missing key " << k;
  EXPECT_EQ(j.value("denormals", ""), "flush") << "subnormals are flushed by default";
  EXPECT_EQ(j.value("cpu_vector_width", ""), cpu_vector_width()) << "the loops' width, as run";
  EXPECT_TRUE(j.at("peaks").contains("cpu"));
  const bool cuda_usable = cuda_unavailable_reason().empty();
  ASSERT_EQ(j.at("results").size(), cuda_usable ? 2u : 1u) << j.dump(2);
  if (!cuda_usable) {
    ASSERT_EQ(j.at("skipped").size(), 1u);
    EXPECT_EQ(j["skipped"][0].at("device"), "cuda");
    EXPECT_FALSE(j["skipped"][0].at("reason").get<std::string>().empty());
  }
  const auto& row = j["results"][0];
  EXPECT_EQ(row.at("device"), "cpu");
  EXPECT_EQ(row.at("batch_size"), 100);
  for (const char* k : {"backend", "steps", "repeats", "samples_per_sec", "samples_per_sec_min",
                        "samples_per_sec_max", "step_ms", "epoch_seconds", "gemm_ms", "gemm_share",
                        "gflop_per_step", "gflops", "gemm_gflops", "peak_gflops", "peak_share",
                        "speedup_vs_cpu", "loss"})
    EXPECT_TRUE(row.contains(k)) << "missing key " << k;
  std::set<std::string> phases;
  for (const auto& [k, v] : row.at("phases_ms").items()) {
    phases.insert(k);
    EXPECT_TRUE(v.is_number() && v.get<double>() >= 0) << k;
  }
  EXPECT_EQ(phases, (std::set<std::string>{"copy", "forward_gemm", "forward_other", "backward_gemm",
                                           "backward_other", "update", "total"}));
  EXPECT_TRUE(row.at("samples_per_sec").get<double>() > 0);
  EXPECT_TRUE(row.at("speedup_vs_cpu").is_null()) << "the CPU row has no speed-up";
  EXPECT_TRUE(r.err.find("synthetic") != std::string::npos) << "the header says which data";
}

TEST(BenchCli, SweepPrintsOneRowPerBatchSize) {
  const CommandResult r = run_cli({"bench", "--device", "cpu", "--synthetic", "--sweep", "--steps",
                                   "3", "--warmup", "0", "--repeats", "1", "--hidden", "16"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  // Both tables (throughput, phases) have a "cpu <batch> ..." row per size.
  std::multiset<int64_t> rows;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string device;
    int64_t batch = 0;
    if (words >> device >> batch && device == "cpu") rows.insert(batch);
  }
  for (int64_t b : {100, 256, 512, 1024, 2048, 4096})
    EXPECT_EQ(rows.count(b), 2u) << b << "\n" << r.out;
  EXPECT_EQ(rows.size(), 12u) << r.out;
  const CommandResult j =
      run_cli({"bench", "--device", "cpu", "--synthetic", "--sweep", "--steps", "3", "--warmup",
               "0", "--repeats", "1", "--hidden", "16", "--json"});
  ASSERT_EQ(j.exit_code, 0) << describe(j);
  std::vector<int64_t> batches;
  const nlohmann::json doc = nlohmann::json::parse(j.out);  // outlives the loop below
  for (const auto& row : doc.at("results")) batches.push_back(row.at("batch_size").get<int64_t>());
  EXPECT_EQ(batches, (std::vector<int64_t>{100, 256, 512, 1024, 2048, 4096}));
}

// bench --kernels --json on the CPU: the nodes, and the schedule's groups
// (each timed inside the step) whose times add up to groups_us.
TEST(BenchCli, KernelsJsonHasNodesAndTheCpuSchedulesGroups) {
  const CommandResult r =
      run_cli({"bench", "--device", "cpu", "--synthetic", "--kernels", "--steps", "2", "--warmup",
               "1", "--repeats", "1", "--hidden", "64,32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << describe(r);
  ASSERT_EQ(j.at("kernels").size(), 1u) << j.dump(2);
  const auto& k = j["kernels"][0];
  EXPECT_EQ(k.at("device"), "cpu");
  EXPECT_FALSE(k.at("nodes").empty());
  ASSERT_FALSE(k.at("groups").empty()) << k.dump(2);
  double sum = 0;
  for (const auto& g : k["groups"]) {
    for (const char* key : {"name", "us", "gemm_gflops", "of_peak"})
      EXPECT_TRUE(g.contains(key)) << "missing key " << key << " in " << g.dump();
    EXPECT_TRUE(g.at("us").get<double>() >= 0) << g.dump();
    sum += g.at("us").get<double>();
  }
  const double total = k.at("groups_us").get<double>();
  EXPECT_TRUE(std::abs(sum - total) <= 1e-6 * (1 + total)) << sum << " vs " << total;
  // The shares are of the higher of the peak measured before and after the timing.
  if (cpu_peak(1).gflops > 0) {
    EXPECT_TRUE(testing::contains(r.err, "measured again after the runs")) << describe(r);
  }
}

TEST(BenchCli, BadFlagsAndUnusableCudaFailWithTheirCodes) {
  EXPECT_EQ(run_cli({"bench", "--steps", "0"}).exit_code, 2);
  EXPECT_EQ(run_cli({"bench", "--device", "gpu"}).exit_code, 2);
  if (cuda_unavailable_reason().empty()) GTEST_SKIP() << "a CUDA device is usable here";
  const CommandResult r = run_cli({"bench", "--device", "cuda", "--synthetic", "--steps", "1"});
  EXPECT_EQ(r.exit_code, 6) << describe(r);
}

TEST(PlotTool, WritesAPngFromATrainingLog) {
  const CommandResult probe = testing::run_command({"/usr/bin/python3", "-c", "import matplotlib"});
  if (probe.exit_code != 0) GTEST_SKIP() << "matplotlib is not installed for /usr/bin/python3";
  TempDir dir;
  std::string log = R"({"event":"start","device":"cpu","init":"he","batch_size":100})"
                    "\n";
  for (int e = 1; e <= 3; ++e)
    log += "{\"event\":\"epoch\",\"epoch\":" + std::to_string(e) +
           ",\"loss\":" + std::to_string(0.5 / e) + ",\"train_accuracy\":0.9" + std::to_string(e) +
           ",\"test_loss\":0.2,\"test_accuracy\":0.9" + std::to_string(e) + "}\n";
  testing::write_text(dir.file("log.jsonl"), log);
  const std::string png = dir.file("curves.png");
  const CommandResult r = testing::run_command(
      {std::string(MLP_SOURCE_DIR) + "/tools/plot", "-o", png, dir.file("log.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string bytes = testing::read_text(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");

  testing::write_text(dir.file("bad.jsonl"), "{\"event\":\"epoch\"\n");
  const CommandResult bad = testing::run_command({std::string(MLP_SOURCE_DIR) + "/tools/plot", "-o",
                                                  dir.file("x.png"), dir.file("bad.jsonl")});
  EXPECT_EQ(bad.exit_code, 1) << describe(bad);
  EXPECT_TRUE(bad.err.find("bad.jsonl:1") != std::string::npos) << describe(bad);
}

}  // namespace
}  // namespace mlp
