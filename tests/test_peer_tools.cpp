// tools/bench-pytorch end to end on the CPU, when /usr/bin/python3 has torch:
// one row per CPU thread count 1..cores, each row's BLAS pool really at that
// count, `best.cpu` the fastest row, the keys tools/compare and tools/gpu-check
// read, and a bad --variants refused. Behaviour, never speed. Skipped without
// torch (tools/setup --peers installs it).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "testing.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::describe;
using testing::run_command;

bool python_has_torch() {
  return run_command({"/usr/bin/python3", "-c", "import torch, numpy"}).exit_code == 0;
}

std::string bench_pytorch() { return std::string(MLP_SOURCE_DIR) + "/tools/bench-pytorch"; }

TEST(PeerTools, BenchPytorchCpuJsonHasEveryThreadCountAndTheBest) {
  if (!python_has_torch())
    GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (tools/setup --peers adds it)";
  // eager only: torch.compile on a many-core machine would compile once per thread count
  const CommandResult r =
      run_command({bench_pytorch(), "--device", "cpu", "--steps", "3", "--repeats", "1", "--warmup",
                   "1", "--synthetic", "--variants", "eager", "--json"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << describe(r);
  for (const char* k : {"tool", "version", "cores", "threads", "layers", "results", "skipped",
                        "best", "cuda_variants", "variants"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["tool"], "pytorch");
  EXPECT_EQ(j["data_source"], "synthetic");

  const int cores = j["cores"].get<int>();
  ASSERT_GE(cores, 1);
  std::set<int> expected, seen;
  for (int t = 1; t <= cores; ++t) expected.insert(t);
  double fastest = 0;
  for (const auto& row : j["results"]) {
    for (const char* k : {"device", "variant", "name", "threads", "batch_size", "samples_per_sec",
                          "step_us", "epoch_ms", "optimizer", "phases_ms", "loss"})
      ASSERT_TRUE(row.contains(k)) << k << " in " << row.dump();
    EXPECT_EQ(row["device"], "cpu");
    EXPECT_EQ(row["variant"], "eager");
    EXPECT_EQ(row["name"], "pytorch_eager");
    EXPECT_EQ(row["batch_size"], 100);
    const double sps = row["samples_per_sec"].get<double>();
    EXPECT_TRUE(sps > 0) << row.dump();  // also false for NaN
    EXPECT_TRUE(row["epoch_ms"].get<double>() > 0) << row.dump();
    const int t = row["threads"].get<int>();
    seen.insert(t);
    // the point of one process per count: the BLAS pool is what the row says
    if (row.contains("blas_threads") && !row["blas_threads"].is_null()) {
      EXPECT_EQ(row["blas_threads"].get<int>(), t) << row.dump();
    }
    fastest = std::max(fastest, sps);
  }
  EXPECT_EQ(seen, expected) << describe(r);
  EXPECT_EQ(j["threads"].get<std::set<int>>(), expected);

  ASSERT_TRUE(j["best"].contains("cpu")) << j["best"].dump();
  ASSERT_TRUE(j["best"]["cpu"].is_object()) << j["best"].dump();
  EXPECT_EQ(j["best"]["cpu"]["samples_per_sec"].get<double>(), fastest);
  EXPECT_TRUE(j["best"]["cuda"].is_null());  // --device cpu
}

TEST(PeerTools, BenchPytorchRefusesAnUnknownVariant) {  // argparse: needs no torch
  const CommandResult r = run_command({bench_pytorch(), "--variants", "eager,warp_drive"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("warp_drive"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace mlp
