// `--engine fused` through the real binary, on the CPU, where it runs the kernel's CPU
// emulation through the same FusedTrainer / FusedEvaluator the GPU runs: the epoch losses a
// run logs are the emulation's, computed here from the same init and the same per-epoch
// permutation, to the bit; they follow the cublas engine (the CPU reference) within tolerance;
// --save/--resume continue bit-exactly and the checkpoint works with either engine; eval
// agrees with the cublas engine's; unsupported combinations exit 6 naming the reason; bench
// prints rows for both engines.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "fused/fused_emulation.h"
#include "fused/fused_runner.h"
#include "mlp/checkpoint.h"
#include "mlp/model.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::contains;
using testing::describe;
using testing::run_cli;
using testing::TempDir;

constexpr uint32_t kTrain = 300, kTest = 50;
constexpr int64_t kBatch = 50;

// A small MNIST-format data set (28x28, so the default input size holds).
struct Data {
  TempDir dir;
  Data() {
    testing::write_split(dir.path(), "train", testing::make_split(kTrain, 28, 28, 5), 28, 28);
    testing::write_split(dir.path(), "t10k", testing::make_split(kTest, 28, 28, 6), 28, 28);
  }
};

std::vector<std::string> train_args(const Data& d, const std::string& engine, int epochs) {
  return {"train",
          "--engine",
          engine,
          "--device",
          "cpu",
          "--data",
          d.dir.path(),
          "--hidden",
          "16",
          "--batch-size",
          std::to_string(kBatch),
          "--epochs",
          std::to_string(epochs),
          "--seed",
          "3",
          "-q"};
}

std::vector<double> epoch_losses(const std::string& json_path) {
  std::vector<double> out;
  std::ifstream in(json_path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") == "epoch") out.push_back(j.at("loss").get<double>());
  }
  return out;
}

// The emulation run by hand: He init from seed 3, epoch_permutation(3, e, count) per epoch.
std::vector<double> emulated_losses(const std::string& dir, int epochs) {
  const Dataset train = load_split(dir, Split::kTrain);
  const std::vector<int64_t> sizes{784, 16, 10};
  fused::Plan p{};
  const fused::Verdict v = fused::make_plan(
      {sizes.data(), 3, kBatch, fused::kEmulatedGrid, fused::kEmulatedSmemBytes, false}, &p);
  EXPECT_TRUE(v.ok) << v.reason;
  std::vector<float> params = initial_params(ParamLayout(sizes), InitScheme::kHe, 3);
  std::vector<float> m(params.size()), vv(params.size());
  std::vector<float> work(static_cast<std::size_t>(fused::workspace_bytes(p) / 4));
  OptimizerState st;
  std::vector<double> out;
  for (int e = 0; e < epochs; ++e) {
    const std::vector<uint32_t> perm = epoch_permutation(3, e, kTrain);
    const std::vector<int32_t> order(perm.begin(), perm.end());
    double metrics[2] = {0, 0};
    const int64_t steps = kTrain / kBatch;
    const fused::StepArgs a{train.images.data(),
                            train.labels.data(),
                            order.data(),
                            steps,
                            params.data(),
                            m.data(),
                            vv.data(),
                            &st,
                            metrics,
                            work.data(),
                            nullptr};
    fused::emulate_steps(p, a);
    out.push_back(metrics[0] / static_cast<double>(steps * kBatch));
  }
  return out;
}

TEST(FusedCli, TrainOnCpuLogsTheEmulationsLossesAndFollowsTheReference) {
  Data d;
  std::vector<std::string> args = train_args(d, "fused", 2);
  args.insert(args.end(), {"--log-json", d.dir.file("fused.jsonl")});
  const CommandResult r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::vector<double> got = epoch_losses(d.dir.file("fused.jsonl"));
  const std::vector<double> want = emulated_losses(d.dir.path(), 2);
  ASSERT_EQ(got.size(), 2u);
  for (std::size_t e = 0; e < got.size(); ++e)
    EXPECT_EQ(got[e], want[e]) << "epoch " << e + 1 << ": the same steps, the same bits";

  args = train_args(d, "cublas", 2);
  args.insert(args.end(), {"--log-json", d.dir.file("cublas.jsonl")});
  const CommandResult ref = run_cli(args);
  ASSERT_EQ(ref.exit_code, 0) << describe(ref);
  const std::vector<double> cublas = epoch_losses(d.dir.file("cublas.jsonl"));
  ASSERT_EQ(cublas.size(), 2u);
  for (std::size_t e = 0; e < got.size(); ++e)
    EXPECT_TRUE(std::abs(got[e] - cublas[e]) <= 1e-4 * std::abs(cublas[e]))
        << "epoch " << e + 1 << ": fused " << got[e] << " vs cublas " << cublas[e];
}

TEST(FusedCli, SaveAndResumeContinueBitExactlyWithEitherEngine) {
  Data d;
  std::vector<std::string> whole = train_args(d, "fused", 2);
  whole.insert(whole.end(), {"--save", d.dir.file("whole.ckpt")});
  ASSERT_EQ(run_cli(whole).exit_code, 0);
  std::vector<std::string> first = train_args(d, "fused", 1);
  first.insert(first.end(), {"--save", d.dir.file("half.ckpt")});
  ASSERT_EQ(run_cli(first).exit_code, 0);
  const CommandResult r = run_cli({"train", "--engine", "fused", "--device", "cpu", "--data",
                                   d.dir.path(), "--resume", d.dir.file("half.ckpt"), "--epochs",
                                   "2", "--save", d.dir.file("resumed.ckpt"), "-q"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const Checkpoint a = load_checkpoint(d.dir.file("whole.ckpt"));
  const Checkpoint b = load_checkpoint(d.dir.file("resumed.ckpt"));
  EXPECT_EQ(a.epochs_done, 2);
  EXPECT_EQ(b.epochs_done, 2);
  EXPECT_EQ(a.state.step, 2 * kTrain / kBatch);
  EXPECT_EQ(b.state.step, a.state.step);
  EXPECT_TRUE(a.state.params == b.state.params) << "params";
  EXPECT_TRUE(a.state.m == b.state.m) << "m";
  EXPECT_TRUE(a.state.v == b.state.v) << "v";
  // A fused checkpoint is an ordinary one: the cublas engine resumes it.
  const CommandResult other =
      run_cli({"train", "--engine", "cublas", "--device", "cpu", "--data", d.dir.path(), "--resume",
               d.dir.file("half.ckpt"), "--epochs", "2", "-q"});
  EXPECT_EQ(other.exit_code, 0) << describe(other);
}

nlohmann::json eval_json(const Data& d, const std::string& engine, const std::string& batch) {
  const CommandResult r =
      run_cli({"eval", "--model", d.dir.file("m.ckpt"), "--data", d.dir.path(), "--engine", engine,
               "--device", "cpu", "--batch-size", batch, "--json"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json{};
}

TEST(FusedCli, EvalAgreesWithTheCublasEngine) {
  Data d;
  std::vector<std::string> args = train_args(d, "fused", 1);
  args.insert(args.end(), {"--save", d.dir.file("m.ckpt")});
  ASSERT_EQ(run_cli(args).exit_code, 0);
  const nlohmann::json ref = eval_json(d, "cublas", "1000");
  // 1000: one batch of all 50 rows; 16: three batches and a remainder plan of 2 rows.
  for (const std::string batch : {"1000", "16"}) {
    const nlohmann::json got = eval_json(d, "fused", batch);
    ASSERT_FALSE(got.is_null());
    EXPECT_EQ(got["count"], kTest);
    const double loss = got["loss"].get<double>(), want = ref["loss"].get<double>();
    EXPECT_TRUE(std::abs(loss - want) <= 1e-5 * std::abs(want)) << loss << " vs " << want;
    // The same predictions unless a logit pair is tied within rounding (then one row moves).
    int64_t differ = 0;
    for (int t = 0; t < kClasses; ++t)
      for (int p = 0; p < kClasses; ++p)
        differ +=
            std::abs(got["confusion"][t][p].get<int64_t>() - ref["confusion"][t][p].get<int64_t>());
    EXPECT_LE(differ, 2) << got.dump();
    int64_t diagonal = 0;
    for (int t = 0; t < kClasses; ++t) diagonal += got["confusion"][t][t].get<int64_t>();
    EXPECT_EQ(static_cast<double>(diagonal), got["accuracy"].get<double>() * kTest)
        << "the kernel's correct count equals the confusion matrix's diagonal";
  }
}

TEST(FusedCli, UnsupportedCombinationsExitSixNamingTheReason) {
  Data d;
  const std::string data = d.dir.path();
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"train", "--engine", "fused", "--tf32", "--data", data},
            "--tf32 is not supported yet"},
           {{"train", "--engine", "fused", "--no-graph", "--data", data}, "--no-graph"},
           {{"eval", "--engine", "fused", "--tf32", "--model", d.dir.file("none")}, "--tf32"},
           {{"bench", "--engine", "fused", "--tf32", "--synthetic"}, "--tf32"},
           {{"train", "--engine", "fused", "--device", "cpu", "--data", data, "--hidden",
             "8,8,8,8,8,8,8,8", "--epochs", "1"},
            "1 to 8 layers"}}) {
    const CommandResult r = run_cli(c.args);
    EXPECT_EQ(r.exit_code, 6) << describe(r);
    EXPECT_TRUE(contains(r.err, "--engine fused")) << describe(r);
    EXPECT_TRUE(contains(r.err, c.says)) << describe(r);
  }
  const CommandResult bad = run_cli({"train", "--engine", "magic", "--data", data});
  EXPECT_EQ(bad.exit_code, 2) << describe(bad);
  EXPECT_TRUE(contains(bad.err, "--engine")) << describe(bad);
}

TEST(FusedCli, BenchPrintsRowsForBothEngines) {
  const CommandResult r =
      run_cli({"bench", "--engine", "all", "--device", "cpu", "--synthetic", "--hidden", "16",
               "--steps", "4", "--warmup", "1", "--repeats", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["engines"].size(), 2u) << j.dump();
  std::set<std::string> engines;
  for (const auto& row : j["engines"]) {
    engines.insert(row["engine"].get<std::string>());
    EXPECT_EQ(row["device"], "cpu");
    const double us = row["step_us"].get<double>();
    EXPECT_TRUE(us > 0 && std::isfinite(us)) << row.dump();
    EXPECT_TRUE(std::abs(row["floor_share"].get<double>() - 10.0 / us) <= 1e-12) << row.dump();
    EXPECT_TRUE(std::abs(row["epoch_ms"].get<double>() - us * 600 / 1000) <= 1e-6 * us)
        << "60000 samples at batch 100";
    EXPECT_TRUE(std::isfinite(row["loss"].get<double>()) && row["loss"].get<double>() > 0);
  }
  EXPECT_EQ(engines, (std::set<std::string>{"cublas", "fused"}));
  EXPECT_EQ(j["results"].size(), 1u) << "the cublas rows keep their own table";
}

}  // namespace
}  // namespace mlp
