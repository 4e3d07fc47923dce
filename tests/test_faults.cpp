// Faults, through the real mnist-mlp binary on a small dataset the test
// writes: Ctrl-C (SIGINT) saves a resumable checkpoint and exits 130, and the
// resumed run ends bit-identical to an uninterrupted one; a second SIGINT
// exits at once; a non-finite loss exits 5 and keeps the last good
// checkpoint; a failing write exits 4 and keeps it too; resume refuses a
// checkpoint that does not fit the flags or the data.
#include <signal.h>

#include <nlohmann/json.hpp>

#include "checkpoint_testing.h"

namespace mlp {
namespace {

using testing::Child;
using testing::cli;
using testing::read_bytes;
using testing::run_command;
using testing::TempDir;

// 6000 random 28x28 training images: 600 steps of batch 10 per epoch, long
// enough for a signal to land mid-run, short enough for a test.
const std::string& data_dir() {
  static TempDir dir;
  static bool written = false;
  if (!written) {
    testing::write_split(dir.path(), "train", testing::make_split(6000, 28, 28, 11), 28, 28);
    testing::write_split(dir.path(), "t10k", testing::make_split(200, 28, 28, 12), 28, 28);
    written = true;
  }
  return dir.path();
}

std::vector<std::string> train_args(std::vector<std::string> extra) {
  std::vector<std::string> a{cli(),          "train",     "--data", data_dir(), "--device",
                             "cpu",          "--threads", "1",      "--hidden", "128",
                             "--batch-size", "10",        "-q"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<double> epoch_losses(const std::string& jsonl) {
  std::vector<double> v;
  std::istringstream in(testing::read_text(jsonl));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "epoch") v.push_back(j["loss"].get<double>());
  }
  return v;
}

TEST(Faults, CliResumeAtAnEpochBoundaryEqualsTheStraightRunByteForByte) {
  TempDir t;
  auto r = run_command(
      train_args({"--epochs", "2", "--save", t.file("a.ckpt"), "--log-json", t.file("a.jsonl")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(train_args({"--epochs", "1", "--save", t.file("b.ckpt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(train_args({"--epochs", "2", "--resume", t.file("b.ckpt"), "--save",
                              t.file("c.ckpt"), "--log-json", t.file("c.jsonl")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_bytes(t.file("a.ckpt")), read_bytes(t.file("c.ckpt")));
  const auto a = epoch_losses(t.file("a.jsonl")), c = epoch_losses(t.file("c.jsonl"));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(a[1], c[0]);  // the JSON round-trips doubles exactly
}

TEST(Faults, SigintSavesACheckpointThatResumesToTheSameBits) {
  TempDir t;
  const std::string ck = t.file("cut.ckpt"), log = t.file("cut.jsonl");
  Child child(train_args({"--epochs", "1000", "--save", ck, "--log-json", log}));
  ASSERT_TRUE(child.started());
  // After epoch 1's line the run is inside epoch 2: the signal lands mid-epoch.
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"epoch\"", 120)) << child.err();
  child.signal(SIGINT);
  ASSERT_EQ(child.wait(120), 130) << child.err();
  EXPECT_NE(child.err().find("checkpoint saved to " + ck), std::string::npos) << child.err();
  EXPECT_NE(child.err().find("interrupted "), std::string::npos) << child.err();
  const Checkpoint cut = load_checkpoint(ck);
  ASSERT_GE(cut.epochs_done, 1);
  if (cut.step_in_epoch == 0) std::cerr << "note: the signal landed on an epoch boundary\n";

  // Finish the epoch it was cut in, and compare with a run that never stopped.
  const std::string epochs = std::to_string(cut.epochs_done + 1);
  auto r = run_command(train_args({"--epochs", epochs, "--resume", ck, "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(train_args({"--epochs", epochs, "--save", t.file("straight.ckpt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_bytes(ck), read_bytes(t.file("straight.ckpt")))
      << "cut at epoch " << cut.epochs_done + 1 << " step " << cut.step_in_epoch;
}

TEST(Faults, SecondSigintExitsAtOnceWithoutATornCheckpoint) {
  TempDir t;
  const std::string ck = t.file("x.ckpt"), log = t.file("x.jsonl");
  Child child(train_args({"--epochs", "1000", "--save", ck, "--log-json", log}));
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"epoch\"", 120)) << child.err();
  child.signal(SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  child.signal(SIGINT);
  EXPECT_EQ(child.wait(120), 130) << child.err();
  EXPECT_NE(child.err().find("interrupt"), std::string::npos) << child.err();
  // Whether the save finished or not, whatever is at the path is a whole checkpoint.
  if (std::filesystem::exists(ck)) {
    EXPECT_NO_THROW(load_checkpoint(ck));
  }
}

TEST(Faults, SigintWithoutSaveSaysNothingWasSaved) {
  TempDir t;
  const std::string log = t.file("x.jsonl");
  Child child(train_args({"--epochs", "1000", "--log-json", log}));
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"epoch\"", 120)) << child.err();
  child.signal(SIGINT);
  EXPECT_EQ(child.wait(120), 130);
  EXPECT_NE(child.err().find("nothing saved"), std::string::npos) << child.err();
}

TEST(Faults, NonFiniteLossExits5AndKeepsTheLastGoodCheckpoint) {
  TempDir t;
  const std::string ck = t.file("k.ckpt");
  auto r = run_command(train_args({"--epochs", "1", "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<uint8_t> good = read_bytes(ck);
  r = run_command(
      train_args({"--epochs", "2", "--lr", "1e30", "--save", ck, "--checkpoint-every", "1"}));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("in epoch 1 at step "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("keeps its last good checkpoint"), std::string::npos) << r.err;
  EXPECT_EQ(read_bytes(ck), good);
  EXPECT_EQ(testing::count_files_containing(t.path(), ".tmp"), 0);
}

// A full disk, simulated without privileges: a file-size limit makes write()
// fail with EFBIG (SIGXFSZ ignored, as the shell's trap passes on to exec).
TEST(Faults, FailedWriteExits4AndKeepsTheOldCheckpoint) {
  TempDir t;
  const std::string ck = t.file("k.ckpt");
  auto r = run_command(train_args({"--epochs", "1", "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<uint8_t> good = read_bytes(ck);
  std::string cmd = "trap '' XFSZ; ulimit -f 64; exec";
  for (const auto& a : train_args({"--epochs", "1", "--seed", "2", "--save", ck}))
    cmd += " '" + a + "'";
  r = run_command({"/bin/sh", "-c", cmd});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("cannot save checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unchanged"), std::string::npos) << r.err;
  EXPECT_EQ(read_bytes(ck), good);
  EXPECT_EQ(testing::count_files_containing(t.path(), ".tmp"), 0);
}

TEST(Faults, ResumeRefusesWhatDoesNotFit) {
  TempDir t;
  const std::string ck = t.file("k.ckpt");
  auto r = run_command(train_args({"--epochs", "1", "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  std::vector<std::string> other_shape = train_args({"--epochs", "2", "--resume", ck});
  other_shape[9] = "32";  // --hidden 128 -> 32 (a repeated --hidden is refused)
  r = run_command(other_shape);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("shape mismatch"), std::string::npos) << r.err;
  r = run_command(train_args({"--epochs", "2", "--resume", ck, "--lr", "0.01"}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("--lr"), std::string::npos) << r.err;
  r = run_command(train_args({"--epochs", "1", "--resume", ck}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("already trained 1 epoch"), std::string::npos) << r.err;

  TempDir other;  // same shapes and count, other labels
  testing::write_split(other.path(), "train", testing::make_split(6000, 28, 28, 99), 28, 28);
  testing::write_split(other.path(), "t10k", testing::make_split(200, 28, 28, 12), 28, 28);
  std::vector<std::string> a = train_args({"--epochs", "2", "--resume", ck});
  a[3] = other.path();
  r = run_command(a);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("other data"), std::string::npos) << r.err;

  std::vector<uint8_t> bytes = read_bytes(ck);
  bytes.resize(bytes.size() / 2);
  testing::write_file(t.file("half.ckpt"), bytes);
  r = run_command(train_args({"--epochs", "2", "--resume", t.file("half.ckpt")}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("half.ckpt: checkpoint truncated"), std::string::npos) << r.err;
  r = run_command(train_args({"--epochs", "2", "--resume", t.file("none.ckpt")}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;
}

TEST(Faults, SaveProblemsAreReportedBeforeTraining) {
  auto r = run_command(train_args({"--save", "/nonexistent-dir/k.ckpt"}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("final test accuracy"), std::string::npos);
  r = run_command(train_args({"--save", "/dev/full"}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
  r = run_command(train_args({"--checkpoint-every", "1"}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace mlp
