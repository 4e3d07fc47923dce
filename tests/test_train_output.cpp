// What `train` and `bench` tell a user, through the real binary: interval
// events and the lr in the JSON log, the test loss in the text, a resumed run's
// final line counting the whole run, a resume that would change the schedule
// refused, `--device auto` saying why it uses the CPU, singular forms, and
// `bench --steps` beyond an epoch reported as what ran.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint_testing.h"
#include "mlp/backend.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::contains;
using testing::describe;
using testing::run_cli;
using testing::TempDir;

std::vector<nlohmann::json> events(const std::string& path, const std::string& kind) {
  std::vector<nlohmann::json> out;
  std::istringstream in(testing::read_text(path));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == kind) out.push_back(j);
  }
  return out;
}

// 200 training samples in batches of 20: 10 steps per epoch.
struct TinyData {
  TempDir dir;
  TinyData() {
    testing::write_split(dir.path(), "train", testing::make_split(200, 28, 28, 1), 28, 28);
    testing::write_split(dir.path(), "t10k", testing::make_split(40, 28, 28, 2), 28, 28);
  }
  std::vector<std::string> train(std::vector<std::string> more,
                                 const std::string& batch = "20") const {
    std::vector<std::string> a{"train", "--device",     "cpu", "--data",    dir.path(), "--hidden",
                               "16",    "--batch-size", batch, "--threads", "1"};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
};

TEST(TrainOutput, IntervalsAndTheLrReachTheLogAndTheText) {
  TinyData d;
  const std::string log = d.dir.file("log.jsonl");
  const CommandResult r =
      run_cli(d.train({"--epochs", "2", "--log-interval", "3", "--lr-schedule", "step",
                       "--lr-gamma", "0.5", "--lr-step", "1", "--log-json", log}));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const auto iv = events(log, "interval");
  ASSERT_EQ(iv.size(), 6u) << "steps 3, 6, 9 of each epoch";
  for (std::size_t i = 0; i < iv.size(); ++i) {
    EXPECT_EQ(iv[i]["epoch"], static_cast<int>(i / 3 + 1));
    EXPECT_EQ(iv[i]["step"], static_cast<int>(i % 3 + 1) * 3);
    for (const char* k : {"loss", "train_accuracy", "samples_per_sec", "lr"})
      EXPECT_TRUE(iv[i][k].is_number()) << k << " in " << iv[i].dump();
    EXPECT_FLOAT_EQ(iv[i]["lr"].get<float>(), i < 3 ? 1e-3f : 5e-4f) << iv[i].dump();
  }
  const auto ep = events(log, "epoch");
  ASSERT_EQ(ep.size(), 2u);
  EXPECT_FLOAT_EQ(ep[0]["lr"].get<float>(), 1e-3f);
  EXPECT_FLOAT_EQ(ep[1]["lr"].get<float>(), 5e-4f);
  EXPECT_EQ(events(log, "start")[0]["lr_schedule"], "step");
  EXPECT_TRUE(contains(r.out, "test loss ")) << describe(r);
  EXPECT_TRUE(contains(r.out, "lr 0.0005")) << "a scheduled lr is shown per epoch\n" << describe(r);
  EXPECT_TRUE(contains(r.out, "lr 0.001 x 0.5 every 1 epoch,")) << describe(r);
  EXPECT_TRUE(contains(r.out, "2 epochs of 10 steps")) << describe(r);
}

TEST(TrainOutput, SingularForms) {
  TinyData d;
  const CommandResult r = run_cli(d.train({"--epochs", "1"}, "200"));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "1 epoch of 1 step\n")) << describe(r);
  EXPECT_TRUE(contains(r.out, "after 1 epoch,")) << describe(r);
  EXPECT_TRUE(contains(r.out, "1 thread")) << describe(r);
  EXPECT_FALSE(contains(r.out + r.err, "1 epochs") || contains(r.out + r.err, "1 steps") ||
               contains(r.out + r.err, "1 threads"))
      << describe(r);
}

TEST(TrainOutput, AResumedRunCountsTheWholeRunAndKeepsItsSchedule) {
  TinyData d;
  const std::string ck = d.dir.file("run.ckpt");
  CommandResult r = run_cli(d.train({"--epochs", "1", "--lr-schedule", "cosine", "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  r = run_cli({"train", "--device", "cpu", "--data", d.dir.path(), "--threads", "1", "--resume", ck,
               "--epochs", "3", "--lr-schedule", "step"});
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_TRUE(contains(r.err, "continues its schedule")) << describe(r);
  EXPECT_TRUE(contains(r.err, "--lr-schedule cosine")) << describe(r);
  r = run_cli({"train", "--device", "cpu", "--data", d.dir.path(), "--threads", "1", "--resume", ck,
               "--epochs", "3"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "after 3 epochs (2 in this run),")) << describe(r);
  EXPECT_TRUE(contains(r.out, "cosine")) << "the header shows the checkpoint's schedule\n"
                                         << describe(r);
}

TEST(TrainOutput, AutoDeviceSaysWhyItUsesTheCpu) {
  if (cuda_unavailable_reason().empty()) GTEST_SKIP() << "a CUDA device is usable here";
  TinyData d;
  std::vector<std::string> args = d.train({"--epochs", "1"});
  args[2] = "auto";  // --device auto
  CommandResult r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(
      contains(r.err, "mnist-mlp: --device auto: using the CPU: " + cuda_unavailable_reason()))
      << describe(r);
  args.push_back("--quiet");
  r = run_cli(args);
  EXPECT_FALSE(contains(r.err, "--device auto")) << "--quiet keeps stderr for errors\n"
                                                 << describe(r);
}

TEST(BenchOutput, StepsBeyondAnEpochAreReportedAsWhatRan) {
  // The synthetic set is 60000 samples: batch 10000 makes a 6-step epoch.
  const CommandResult r =
      run_cli({"bench", "--device", "cpu", "--synthetic", "--hidden", "8", "--batch-size", "10000",
               "--steps", "50", "--warmup", "0", "--repeats", "1", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "1 repeat x 6 steps (--steps 50 is more than one epoch of 6)"))
      << describe(r);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["steps"], 6);
  EXPECT_EQ(j["steps_requested"], 50);
  EXPECT_EQ(j["results"][0]["steps"], 6);
}

}  // namespace
}  // namespace mlp
