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

namespace mlp {
namespace {

using testing::Child;
using testing::cli;
using testing::CommandResult;
using testing::read_bytes;
using testing::run_command;
using testing::TempDir;

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

// 6000 random 28x28 training images (600 steps of batch 10 per epoch).
const std::string& data_dir() {
  static TempDir dir;
  static bool written = false;
  if (!written) {
    testing::write_split(dir.path(), "train", testing::make_split(6000, 28, 28, 21), 28, 28);
    testing::write_split(dir.path(), "t10k", testing::make_split(200, 28, 28, 22), 28, 28);
    written = true;
  }
  return dir.path();
}

std::vector<std::string> train_args(std::vector<std::string> extra, bool quiet = true,
                                    const std::string& hidden = "32") {
  std::vector<std::string> a{cli(),       "train", "--data",   data_dir(), "--device",     "cpu",
                             "--threads", "1",     "--hidden", hidden,     "--batch-size", "10"};
  if (quiet) a.push_back("-q");
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// A small trained checkpoint, written once.
const std::string& model_path() {
  static TempDir dir;
  static std::string path;
  if (path.empty()) {
    const auto r = run_command(train_args({"--epochs", "1", "--save", dir.file("m.ckpt")}));
    if (r.exit_code != 0) throw std::runtime_error("training the test model failed: " + r.err);
    path = dir.file("m.ckpt");
  }
  return path;
}

// Runs argv with stdout on `out_fd` (stderr captured); the caller keeps out_fd.
// `max_rss_kb`, when given, receives the child's peak resident memory.
CommandResult run_with_stdout(const std::vector<std::string>& argv, int out_fd,
                              long* max_rss_kb = nullptr) {
  TempDir dir;
  const std::string err_path = dir.file("stderr");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  CommandResult r;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) return r;
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  struct rusage usage {};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = testing::read_text(err_path);
  if (max_rss_kb) *max_rss_kb = usage.ru_maxrss;
  return r;
}

// A PID that belonged to a process that has exited.
long dead_pid() {
  const CommandResult r = run_command({"/bin/sh", "-c", "echo $$"});
  return std::stol(r.out);
}

// ---- 1. signals and pipes ----------------------------------------------------------------

void expect_stop_signal_saves(int sig, const char* name) {
  TempDir t;
  const std::string ck = t.file("s.ckpt"), log = t.file("s.jsonl");
  Child child(train_args({"--epochs", "1000", "--save", ck, "--log-json", log}));
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(testing::wait_for_text(log, "\"event\":\"epoch\"", 120)) << child.err();
  child.signal(sig);
  EXPECT_EQ(child.wait(120), 128 + sig) << child.err();
  EXPECT_TRUE(has(child.err(), std::string("stopped by ") + name)) << child.err();
  EXPECT_TRUE(has(child.err(), "checkpoint saved to " + ck)) << child.err();
  const Checkpoint c = load_checkpoint(ck);
  EXPECT_GE(c.epochs_done, 1);
  EXPECT_TRUE(has(testing::read_text(log), std::string("\"signal\":\"") + name)) << name;
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
  EXPECT_TRUE(has(r.err, "standard output")) << r.err;
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
  EXPECT_TRUE(has(r.err, "--out " + m) && has(r.err, "--model " + m)) << r.err;
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
  EXPECT_TRUE(has(r.err, "not a safetensors file")) << r.err;
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
  EXPECT_TRUE(has(r.err, "--log-json " + r_ck) && has(r.err, "--resume " + r_ck)) << r.err;
  EXPECT_EQ(read_bytes(r_ck), ck);
  // --save and --log-json the same file: one would be lost.
  r = run_command(train_args({"--epochs", "1", "--save", t.file("x"), "--log-json", t.file("x")}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, "--save " + t.file("x")) && has(r.err, "--log-json")) << r.err;
  // --save onto the training data.
  const std::string images = data_dir() + "/train-images-idx3-ubyte.gz";
  const auto data = read_bytes(images);
  r = run_command(train_args({"--epochs", "1", "--save", images}));
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, images)) << r.err;
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
  EXPECT_TRUE(has(r.err, "not an mnist-mlp checkpoint")) << r.err;
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
  EXPECT_TRUE(has(r.err, ck) && has(r.err, "another mnist-mlp run")) << r.err;
  EXPECT_FALSE(has(r.out, "final test accuracy")) << "refused before training";
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
    EXPECT_TRUE(has(r.err, "FIFO")) << describe(r);
  }
}

TEST(Robust, DataFilesThatAreNotFilesAreNamedForWhatTheyAre) {
  TempDir t;
  testing::write_split(t.path(), "t10k", testing::make_split(20, 28, 28, 3), 28, 28);
  ASSERT_TRUE(std::filesystem::create_directory(t.file("train-images-idx3-ubyte")));
  auto r = run_command({cli(), "train", "--data", t.path(), "--device", "cpu", "-q"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(has(r.err, "is a directory")) << r.err;
  std::filesystem::remove(t.file("train-images-idx3-ubyte"));
  ASSERT_EQ(::mkfifo(t.file("train-images-idx3-ubyte").c_str(), 0600), 0);
  r = run_command(
      {"/usr/bin/timeout", "20", cli(), "train", "--data", t.path(), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(has(r.err, "FIFO")) << r.err;
  std::filesystem::remove(t.file("train-images-idx3-ubyte"));
  ASSERT_EQ(::symlink("loop", t.file("loop").c_str()), 0);
  ASSERT_EQ(::symlink("loop", t.file("train-images-idx3-ubyte").c_str()), 0);
  r = run_command({cli(), "train", "--data", t.path(), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(has(r.err, "symbolic link loop")) << r.err;
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
    EXPECT_TRUE(has(r.err, flag)) << flag << " '" << value << "'\n" << describe(r);
    EXPECT_TRUE(has(r.err, "mnist-mlp: error: ")) << describe(r);
  }
  // A repeated --hidden is refused like every other repeated flag.
  const auto r = run_command({cli(), "train", "--data", none, "--hidden", "64", "--hidden", "32"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, "--hidden")) << describe(r);
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
    EXPECT_TRUE(has(r.err, "mnist-mlp: error: ")) << describe(r);
  }
}

TEST(Robust, UnknownCommandIsNamedAndTheCommandsListed) {
  const auto r = run_command({cli(), "bogus"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, "unknown command 'bogus'")) << r.err;
  for (const char* c : {"train", "eval", "predict", "export", "info", "bench"})
    EXPECT_TRUE(has(r.err, c)) << r.err;
}

TEST(Robust, MoreHiddenLayersThanACheckpointHoldsAreRefusedAtTheFlag) {
  TempDir dir;
  std::string many = "8";
  for (int i = 1; i < 63; ++i) many += ",8";  // 63 hidden + inputs + classes = 65 sizes
  auto r = run_command({cli(), "train", "--data", dir.file("none"), "--hidden", many});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, "--hidden") && has(r.err, "62")) << r.err;
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

// ---- 3. sizes before allocating or reading -----------------------------------------------

TEST(Robust, ANetworkThatCannotFitIsRefusedBeforeAllocating) {
  TempDir dir;
  const auto r = run_command(
      {cli(), "train", "--data", dir.file("none"), "--device", "cpu", "--hidden", "65536,65536"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_TRUE(has(r.err, "--hidden 65536,65536") && has(r.err, "bytes")) << r.err;
}

// Peak memory a command may take here without having read or decoded the
// big input; AddressSanitizer's shadow memory raises every process's baseline.
#if defined(__SANITIZE_ADDRESS__)
constexpr long kSmallRssKb = 450 * 1024;
#else
constexpr long kSmallRssKb = 150 * 1024;
#endif

// Runs argv (stdout discarded) and returns its result; rss_kb gets its peak memory.
CommandResult run_measured(const std::vector<std::string>& argv, long& rss_kb) {
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  const CommandResult r = run_with_stdout(argv, null_fd, &rss_kb);
  ::close(null_fd);
  return r;
}

// A file whose header is valid for a small payload but which is 1 GB long
// (sparse, so it costs no disk): refused from the header and the file size,
// without reading it (reading it took its size in memory).
TEST(Robust, HugeFilesWithAValidHeaderAreRefusedWithoutReadingThem) {
  TempDir t;
  const std::string idx = t.file("big-idx");
  testing::write_file(idx, testing::idx_bytes(0x08, {2, 28, 28}, std::vector<uint8_t>(2 * 784)));
  ASSERT_EQ(::truncate(idx.c_str(), off_t{1} << 30), 0);
  long rss_kb = 0;
  auto r = run_measured(
      {cli(), "predict", "--model", model_path(), "--device", "cpu", "--idx", idx, "--index", "0"},
      rss_kb);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "trailing bytes")) << r.err;
  EXPECT_LT(rss_kb, kSmallRssKb) << "peak memory " << rss_kb << " KiB: the file was read";

  const std::string ck = t.file("big.ckpt");
  testing::write_file(ck, read_bytes(model_path()));
  ASSERT_EQ(::truncate(ck.c_str(), off_t{1} << 30), 0);
  r = run_measured({cli(), "eval", "--model", ck, "--data", data_dir(), "--device", "cpu"}, rss_kb);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(has(r.err, "trailing bytes")) << r.err;
  EXPECT_LT(rss_kb, kSmallRssKb) << "peak memory " << rss_kb << " KiB: the file was read";
}

TEST(Robust, AHugePngIsRefusedFromItsHeaderBeforeDecoding) {
  TempDir t;
  testing::write_png_black(t.file("huge.png"), 16384, 16384);  // 268 MB of pixels, 260 KB file
  // Decoding would take 268 MB; the header check takes nothing of the kind.
  long rss_kb = 0;
  const auto r = run_measured(
      {cli(), "predict", "--model", model_path(), "--device", "cpu", t.file("huge.png")}, rss_kb);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "image is 16384x16384")) << r.err;
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "peak memory not compared under AddressSanitizer (its baseline is too high)";
#endif
  EXPECT_LT(rss_kb, kSmallRssKb) << "peak memory " << rss_kb << " KiB: the pixels were decoded";
}

// ---- 6. output that is lost is reported ---------------------------------------------------

TEST(Robust, JsonOutputToAFullDeviceIsAnError) {
  const int full = ::open("/dev/full", O_WRONLY);
  if (full < 0) GTEST_SKIP() << "no /dev/full";
  GrayImage img;
  img.width = img.height = 28;
  img.pixels.assign(784, 7);
  TempDir t;
  testing::write_png_gray(t.file("a.png"), img);
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {cli(), "eval", "--model", model_path(), "--data", data_dir(), "--device", "cpu",
            "--json"},
           {cli(), "predict", "--model", model_path(), "--device", "cpu", "--json",
            t.file("a.png")},
           {cli(), "eval", "--model", model_path(), "--data", data_dir(), "--device", "cpu"},
           {cli(), "bench", "--device", "cpu", "--json", "--batch-size", "10", "--hidden", "16",
            "--steps", "2", "--warmup", "0", "--repeats", "1", "--threads", "1"}}) {
    const auto r = run_with_stdout(argv, full);
    EXPECT_NE(r.exit_code, 0) << argv[1] << "\n" << r.err;
    EXPECT_TRUE(has(r.err, "standard output")) << r.err;
  }
  ::close(full);
}

// --log-json into a FIFO whose reader goes away after the first epoch: the
// log write fails mid-run, and the epochs trained so far are saved first.
// Trains until its first epoch line has been read from a FIFO log, then closes the
// reader so the next JSON line cannot be written; returns the saved checkpoint.
Checkpoint train_until_the_log_fails(const std::string& log_interval) {
  TempDir t;
  const std::string fifo = t.file("log.fifo"), ck = t.file("k.ckpt");
  EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // not inherited
  EXPECT_GE(rd, 0);
  Child child(train_args(
      {"--epochs", "100000", "--save", ck, "--log-json", fifo, "--log-interval", log_interval}));
  EXPECT_TRUE(child.started());
  std::string seen;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!has(seen, "\"event\":\"epoch\"") && std::chrono::steady_clock::now() < end) {
    struct pollfd p {
      rd, POLLIN, 0
    };
    if (::poll(&p, 1, 100) > 0) {
      char buf[4096];
      const ssize_t n = ::read(rd, buf, sizeof(buf));
      if (n > 0) seen.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(rd);  // the log's reader is gone: the next JSON line cannot be written
  EXPECT_TRUE(has(seen, "\"event\":\"epoch\"")) << child.err();
  const int code = child.wait(120);
  EXPECT_EQ(code, 1) << child.err();
  EXPECT_TRUE(has(child.err(), "--log-json")) << child.err();
  EXPECT_TRUE(has(child.err(), "checkpoint was saved to " + ck)) << child.err();
  if (!std::filesystem::exists(ck)) throw std::runtime_error("no checkpoint: " + child.err());
  return load_checkpoint(ck);
}

TEST(Robust, LogWriteFailureSavesTheCheckpointBeforeExiting) {
  // Per-epoch log lines only: the failing line is epoch 2's, and epoch 2 is kept.
  EXPECT_GE(train_until_the_log_fails("0").epochs_done, 2) << "the epoch whose log line failed";
}

TEST(Robust, LogWriteFailureMidEpochSavesWhereTrainingStands) {
  // With interval lines, the write fails inside epoch 2; the checkpoint holds the steps
  // trained until then (its own checks tie the Adam step to epoch and step).
  const Checkpoint c = train_until_the_log_fails("50");
  EXPECT_GE(c.epochs_done * c.steps_per_epoch() + c.step_in_epoch, c.steps_per_epoch() + 50);
}

// ---- 7. partial success -------------------------------------------------------------------

TEST(Robust, PredictClassifiesTheReadableImagesAndReportsTheOthers) {
  TempDir t;
  GrayImage img;
  img.width = img.height = 28;
  img.pixels.assign(784, 0);
  testing::write_png_gray(t.file("good1.png"), img);
  testing::write_file(t.file("good2.pgm"), testing::encode_pgm(img));
  testing::write_text(t.file("bad.png"), "not an image");
  const auto r = run_command({cli(), "predict", "--model", model_path(), "--device", "cpu",
                              t.file("good1.png"), t.file("bad.png"), t.file("good2.pgm")});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(has(r.out, t.file("good1.png") + ": ")) << describe(r);
  EXPECT_TRUE(has(r.out, t.file("good2.pgm") + ": ")) << describe(r);
  EXPECT_TRUE(has(r.err, t.file("bad.png"))) << describe(r);
  EXPECT_TRUE(has(r.err, "1 of 3 images could not be read")) << describe(r);
  const auto j = run_command({cli(), "predict", "--model", model_path(), "--device", "cpu",
                              "--json", t.file("bad.png"), t.file("good1.png")});
  EXPECT_EQ(j.exit_code, 3) << describe(j);
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["predictions"].size(), 1u);
  EXPECT_EQ(doc["errors"].size(), 1u);
}

// ---- 8. resume that keeps nothing ---------------------------------------------------------

TEST(Robust, ResumeWithoutSaveWarnsAtTheStart) {
  const auto r = run_command(train_args({"--epochs", "2", "--resume", model_path()}));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(has(r.err, "warning: --resume " + model_path() + " without --save")) << r.err;
  const auto saved = run_command(train_args(
      {"--epochs", "2", "--resume", model_path(), "--save", testing::TempDir().file("x")}));
  EXPECT_FALSE(has(saved.err, "without --save")) << saved.err;
}

// ---- 9. divergence ------------------------------------------------------------------------

TEST(Robust, ADivergingLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  TempDir t;
  const std::string ck = t.file("d.ckpt");
  testing::write_file(ck, read_bytes(model_path()));
  const auto good = read_bytes(ck);
  const auto r = run_command(
      train_args({"--epochs", "4", "--beta2", "0", "--save", ck, "--checkpoint-every", "1"}));
  EXPECT_EQ(r.exit_code, 7) << describe(r);
  EXPECT_TRUE(has(r.err, "diverged")) << r.err;
  EXPECT_EQ(read_bytes(ck), good) << "the diverged state is not saved";
}

// The growth rule, which a short CLI run cannot reach reliably: a loss 1000x
// the lowest so far stops the run even while it is far below the bound.
TEST(Robust, DivergenceGuardStopsOnGrowthAndOnTheBound) {
  cli::DivergenceGuard g;
  EpochStats s;
  s.epoch = 1;
  s.loss = 2815;  // the tutorial's N(0,1) init starts here: no alarm
  EXPECT_TRUE(g.on_epoch_end(s));
  s.epoch = 2;
  s.loss = 0.5;
  EXPECT_TRUE(g.on_epoch_end(s));
  s.epoch = 3;
  s.loss = 400;  // 800x the lowest: still allowed
  EXPECT_TRUE(g.on_epoch_end(s));
  s.epoch = 4;
  s.loss = 501;  // > 1000x
  try {
    g.on_epoch_end(s);
    ADD_FAILURE() << "no divergence reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kDiverged);
    EXPECT_TRUE(has(e.what(), "epoch 4")) << e.what();
  }
  cli::DivergenceGuard fresh;
  s.loss = 2e9;
  EXPECT_THROW(fresh.on_epoch_end(s), Error);
  cli::DivergenceGuard nan_guard;
  s.loss = std::nan("");
  EXPECT_THROW(nan_guard.on_epoch_end(s), Error);
}

// ---- issue 12: 16-bit PNGs keep their values ----------------------------------------------

TEST(Robust, SixteenBitGrayPngKeepsItsValues) {
  TempDir t;
  std::vector<uint16_t> px(28 * 28);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>((i % 256) * 257);
  testing::write_png_gray16(t.file("g16.png"), 28, 28, px);
  const GrayImage img = read_image(t.file("g16.png"));
  ASSERT_EQ(img.pixels.size(), px.size());
  for (std::size_t i = 0; i < px.size(); ++i)
    ASSERT_EQ(img.pixels[i], i % 256) << "pixel " << i << " (76 used to become 147)";
  // Through predict: the 16-bit image classifies exactly like its 8-bit twin.
  GrayImage eight;
  eight.width = eight.height = 28;
  eight.pixels.resize(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) eight.pixels[i] = static_cast<uint8_t>(i % 256);
  testing::write_png_gray(t.file("g8.png"), eight);
  // Random weights: every pixel moves the probabilities.
  const std::string m = t.file("random.ckpt");
  save_checkpoint(m, testing::random_checkpoint({784, 64, 10}, 28, 28, 5));
  const auto a =
      run_command({cli(), "predict", "--model", m, "--device", "cpu", "--json", t.file("g16.png")});
  const auto b =
      run_command({cli(), "predict", "--model", m, "--device", "cpu", "--json", t.file("g8.png")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["predictions"][0]["probabilities"],
            nlohmann::json::parse(b.out)["predictions"][0]["probabilities"]);
}

}  // namespace
}  // namespace mlp
