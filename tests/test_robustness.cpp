// Issue 10 ("never lose work, never hang, never destroy a file"), through the
// real mnist-mlp binary: stop signals other than Ctrl-C, a closed stdout
// pipe, outputs that collide with inputs or other outputs, a second writer to
// the same checkpoint, FIFOs and directories given as files, stale temporary
// files, flag values checked as the type used, sizes checked before
// allocating or reading, lost output, partial predict results, resume
// without --save, and a diverging loss. Every test here failed before the
// fix it covers.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "checkpoint_testing.h"
#include "cli/divergence.h"
#include "image_writers.h"
#include "mlp/image_io.h"
#include "robustness_testing.h"

namespace mlp {
namespace {

using testing::Child;
using testing::cli;
using testing::CommandResult;
using testing::read_bytes;
using testing::run_command;
using testing::TempDir;
using namespace robustness;  // NOLINT: the shared helpers of these tests

// ---- 1. signals and pipes ----------------------------------------------------------------

void expect_stop_signal_saves(int sig, const char* name) {
  TempDir t;
  const std::string ck = t.file("s.ckpt"), log = t.file("s.jsonl");
  Child child(train_args({"--epochs", "1000", "--save", ck, "--log-json", log}));
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"epoch\"", 120)) << child.err();
  child.signal(sig);
  EXPECT_EQ(child.wait(120), 128 + sig) << child.err();
  EXPECT_TRUE(contains(child.err(), std::string("stopped by ") + name)) << child.err();
  EXPECT_TRUE(contains(child.err(), "checkpoint saved to " + ck)) << child.err();
  const Checkpoint c = load_checkpoint(ck);
  EXPECT_GE(c.epochs_done, 1);
  EXPECT_TRUE(contains(testing::read_text(log), std::string("\"signal\":\"") + name)) << name;
}

TEST(Robust, SigtermStopsAfterTheStepSavesAndExits143) {
  expect_stop_signal_saves(SIGTERM, "SIGTERM");
}

TEST(Robust, SighupStopsAfterTheStepSavesAndExits129) {
  expect_stop_signal_saves(SIGHUP, "SIGHUP");
}

TEST(Robust, ClosedStdoutPipeDoesNotKillTraining) {
  TempDir t;
  const std::string ck = t.file("p.ckpt");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);  // `| head -1` that already exited: every write gets EPIPE/SIGPIPE
  const CommandResult r =
      run_with_stdout(train_args({"--epochs", "2", "--save", ck}, /*quiet=*/false), fds[1]);
  ::close(fds[1]);
  EXPECT_NE(r.exit_code, 128 + SIGPIPE) << "killed by SIGPIPE\n" << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;  // the run finished, but its output was lost: said so
  EXPECT_TRUE(contains(r.err, "standard output")) << r.err;
  const Checkpoint c = load_checkpoint(ck);
  EXPECT_EQ(c.epochs_done, 2) << "training went on to the end and saved";
}

// ---- 2. paths that collide or are not what they seem -------------------------------------

TEST(Robust, ExportOntoItsOwnCheckpointIsRefused) {
  TempDir t;
  const std::string m = t.file("m.ckpt");
  testing::write_file(m, read_bytes(model_path()));
  const auto before = read_bytes(m);
  const auto r = run_command({cli(), "export", "--model", m, "--out", m});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--out " + m) && contains(r.err, "--model " + m)) << r.err;
  EXPECT_EQ(read_bytes(m), before);
  // The same file through another name (a symlink) is the same file.
  ASSERT_EQ(::symlink(m.c_str(), t.file("link.safetensors").c_str()), 0);
  const auto r2 = run_command({cli(), "export", "--model", m, "--out", t.file("link.safetensors")});
  EXPECT_EQ(r2.exit_code, 2) << describe(r2);
  EXPECT_EQ(read_bytes(m), before);
}

TEST(Robust, ExportRefusesToReplaceAnUnrelatedFile) {
  TempDir t;
  testing::write_text(t.file("notes.txt"), "my notes\n");
  const auto r =
      run_command({cli(), "export", "--model", model_path(), "--out", t.file("notes.txt")});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "not a safetensors file")) << r.err;
  EXPECT_EQ(testing::read_text(t.file("notes.txt")), "my notes\n");
  // Replacing an earlier export is what --out is for.
  const std::string st = t.file("m.safetensors");
  ASSERT_EQ(run_command({cli(), "export", "--model", model_path(), "--out", st}).exit_code, 0);
  EXPECT_EQ(run_command({cli(), "export", "--model", model_path(), "--out", st}).exit_code, 0);
}

TEST(Robust, TrainOutputsThatCollideAreRefusedBeforeAnythingIsWritten) {
  TempDir t;
  const std::string r_ck = t.file("r.ckpt");
  testing::write_file(r_ck, read_bytes(model_path()));
  const auto ck = read_bytes(r_ck);
  // --log-json onto the checkpoint being resumed: it used to be truncated first.
  auto r = run_command(train_args({"--epochs", "2", "--resume", r_ck, "--log-json", r_ck}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--log-json " + r_ck) && contains(r.err, "--resume " + r_ck))
      << r.err;
  EXPECT_EQ(read_bytes(r_ck), ck);
  // --save and --log-json the same file: one would be lost.
  r = run_command(train_args({"--epochs", "1", "--save", t.file("x"), "--log-json", t.file("x")}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--save " + t.file("x")) && contains(r.err, "--log-json")) << r.err;
  // --save onto the training data.
  const std::string images = data_dir() + "/train-images-idx3-ubyte.gz";
  const auto data = read_bytes(images);
  r = run_command(train_args({"--epochs", "1", "--save", images}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, images)) << r.err;
  EXPECT_EQ(read_bytes(images), data);
  // --resume X --save X continues a checkpoint in place: still allowed.
  r = run_command(train_args({"--epochs", "2", "--resume", r_ck, "--save", r_ck}));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(load_checkpoint(r_ck).epochs_done, 2);
}

TEST(Robust, SaveRefusesToReplaceAFileThatIsNotACheckpoint) {
  TempDir t;
  testing::write_text(t.file("notes.txt"), "my notes\n");
  auto r = run_command(train_args({"--epochs", "1", "--save", t.file("notes.txt")}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "not an mnist-mlp checkpoint")) << r.err;
  EXPECT_EQ(testing::read_text(t.file("notes.txt")), "my notes\n");
  testing::write_text(t.file("log.txt"), "not json\n");
  r = run_command(train_args({"--epochs", "1", "--log-json", t.file("log.txt")}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_EQ(testing::read_text(t.file("log.txt")), "not json\n");
}

TEST(Robust, SecondRunSavingToTheSamePathIsRefusedAtOnce) {
  TempDir t;
  const std::string ck = t.file("shared.ckpt"), log = t.file("first.jsonl");
  Child first(train_args({"--epochs", "1000", "--save", ck, "--log-json", log}));
  ASSERT_TRUE(first.started());
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"start\"", 120)) << first.err();
  const auto r = run_command(train_args({"--epochs", "1", "--save", ck}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, ck) && contains(r.err, "another mnist-mlp run")) << r.err;
  EXPECT_FALSE(contains(r.out, "final test accuracy")) << "refused before training";
  first.signal(SIGINT);
  EXPECT_EQ(first.wait(120), 130) << first.err();
  EXPECT_FALSE(std::filesystem::exists(ck + ".lock")) << "the lock file is removed at the end";
  // Once the first run is gone, the path is free again.
  EXPECT_EQ(run_command(train_args({"--epochs", "1", "--save", ck})).exit_code, 0);
}

TEST(Robust, FifosAreRefusedNotWaitedOn) {
  TempDir t;
  const std::string fifo = t.file("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<std::vector<std::string>> cmds{
      {cli(), "eval", "--model", fifo, "--data", data_dir()},
      {cli(), "predict", "--model", fifo, "x.png"},
      {cli(), "predict", "--model", model_path(), fifo},
      {cli(), "predict", "--model", model_path(), "--idx", fifo, "--index", "0"},
      train_args({"--epochs", "2", "--resume", fifo})};
  for (const auto& argv : cmds) {
    // `timeout` turns a hang into exit 124 instead of a stuck test.
    std::vector<std::string> a{"/usr/bin/timeout", "20"};
    a.insert(a.end(), argv.begin(), argv.end());
    const auto r = run_command(a);
    EXPECT_NE(r.exit_code, 124) << "hung on a FIFO: " << argv[1] << " " << argv[2];
    EXPECT_TRUE(r.exit_code == 3 || r.exit_code == 4) << describe(r);
    EXPECT_TRUE(contains(r.err, "FIFO")) << describe(r);
  }
}

TEST(Robust, DataFilesThatAreNotFilesAreNamedForWhatTheyAre) {
  TempDir t;
  testing::write_split(t.path(), "t10k", testing::make_split(20, 28, 28, 3), 28, 28);
  ASSERT_TRUE(std::filesystem::create_directory(t.file("train-images-idx3-ubyte")));
  auto r = run_command({cli(), "train", "--data", t.path(), "--device", "cpu", "-q"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, "is a directory")) << r.err;
  std::filesystem::remove(t.file("train-images-idx3-ubyte"));
  ASSERT_EQ(::mkfifo(t.file("train-images-idx3-ubyte").c_str(), 0600), 0);
  r = run_command(
      {"/usr/bin/timeout", "20", cli(), "train", "--data", t.path(), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, "FIFO")) << r.err;
  std::filesystem::remove(t.file("train-images-idx3-ubyte"));
  ASSERT_EQ(::symlink("loop", t.file("loop").c_str()), 0);
  ASSERT_EQ(::symlink("loop", t.file("train-images-idx3-ubyte").c_str()), 0);
  r = run_command({cli(), "train", "--data", t.path(), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, "symbolic link loop")) << r.err;
}

TEST(Robust, StaleTemporariesOfAKilledSaveAreRemovedByTheNextSave) {
  TempDir t;
  const std::string ck = t.file("k.ckpt");
  const std::string stale = fmt::format("{}.tmp-{}-0", ck, dead_pid());
  const std::string live = fmt::format("{}.tmp-{}-0", ck, static_cast<long>(::getppid()));
  testing::write_text(stale, "half a checkpoint");
  testing::write_text(live, "another process still writing");
  const auto r = run_command(train_args({"--epochs", "1", "--save", ck}));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_FALSE(std::filesystem::exists(stale)) << "a dead writer's temporary is removed";
  EXPECT_TRUE(std::filesystem::exists(live)) << "a live writer's temporary is kept";
}

// ---- 4 and 5. every flag value checked as the type used ----------------------------------

TEST(Robust, FlagValuesAreCheckedAsTheTypeTheProgramUses) {
  TempDir dir;  // --data points at nothing: a value that slips through ends as exit 3
  const std::string none = dir.file("none");
  const std::vector<std::pair<std::string, std::string>> bad{
      {"--lr", "inf"},   {"--lr", "1e39"},         {"--lr", "1e-46"},
      {"--lr", "nan"},   {"--beta1", "nan"},       {"--beta2", "nan"},
      {"--beta1", "1"},  {"--eps", "1e-50"},       {"--eps", "inf"},
      {"--save", ""},    {"--resume", ""},         {"--log-json", ""},
      {"--seed", ""},    {"--seed", "-1"},         {"--seed", "18446744073709551616"},
      {"--seed", "1.5"}, {"--hidden", "500,,500"}, {"--hidden", "500,"},
      {"--hidden", ""},  {"--hidden", ",500"},     {"--data", ""}};
  for (const auto& [flag, value] : bad) {
    const auto r = run_command({cli(), "train", "--data", none, flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag << " '" << value << "'\n" << describe(r);
    EXPECT_TRUE(contains(r.err, flag)) << flag << " '" << value << "'\n" << describe(r);
    EXPECT_TRUE(contains(r.err, "mnist-mlp: error: ")) << describe(r);
  }
  // A repeated --hidden is refused like every other repeated flag.
  const auto r = run_command({cli(), "train", "--data", none, "--hidden", "64", "--hidden", "32"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--hidden")) << describe(r);
  // The largest seed is a seed.
  const auto big = run_command(
      {cli(), "train", "--data", none, "--seed", "18446744073709551615", "--device", "cpu"});
  EXPECT_EQ(big.exit_code, 3) << describe(big);
}

TEST(Robust, PredictAndEvalRefuseEmptyAndMalformedValues) {
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {cli(), "predict", "--model", model_path(), "--idx", "x", "--index", ""},
           {cli(), "predict", "--model", model_path(), "--idx", "x", "--index", "1,,2"},
           {cli(), "predict", "--model", model_path(), "--idx", "x", "--index", "-1"},
           {cli(), "predict", "--model", "", "a.png"},
           {cli(), "eval", "--model", ""},
           {cli(), "export", "--model", model_path(), "--out", ""}}) {
    const auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 2) << argv[1] << " " << argv[argv.size() - 2] << "\n" << describe(r);
    EXPECT_TRUE(contains(r.err, "mnist-mlp: error: ")) << describe(r);
  }
}

TEST(Robust, UnknownCommandIsNamedAndTheCommandsListed) {
  const auto r = run_command({cli(), "bogus"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "unknown command 'bogus'")) << r.err;
  for (const char* c : {"train", "eval", "predict", "export", "info", "bench"})
    EXPECT_TRUE(contains(r.err, c)) << r.err;
}

TEST(Robust, MoreHiddenLayersThanACheckpointHoldsAreRefusedAtTheFlag) {
  TempDir dir;
  std::string many = "8";
  for (int i = 1; i < 63; ++i) many += ",8";  // 63 hidden + inputs + classes = 65 sizes
  auto r = run_command({cli(), "train", "--data", dir.file("none"), "--hidden", many});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--hidden") && contains(r.err, "62")) << r.err;
  // 62 is the most a checkpoint holds: it trains, saves and evaluates.
  std::string most = "8";
  for (int i = 1; i < 62; ++i) most += ",8";
  TempDir t;
  r = run_command(train_args({"--epochs", "1", "--save", t.file("deep.ckpt")}, true, most));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  r = run_command(
      {cli(), "eval", "--model", t.file("deep.ckpt"), "--data", data_dir(), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
}

}  // namespace
}  // namespace mlp
