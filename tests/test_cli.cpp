// The real mnist-mlp binary, run as a child process: exit codes and messages
// of every error path (usage 2, data 3, device 6), --help documenting every
// flag with its default (read back and compared with cli::RunConfig's), and a
// tiny end-to-end run whose --log-json lines are checked and reproduced.
// Bad-value runs point --data at a missing directory, so a value that slipped
// through validation shows up as exit 3 instead of a training run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_config.h"
#include "mlp/backend.h"
#include "mlp/trainer.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::CommandResult;
using testing::contains;
using testing::describe;
using testing::run_cli;
using testing::TempDir;

TEST(Cli, UnknownFlagOrSubcommandIsAUsageError) {
  TempDir dir;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"train", "--bogus", "--data", dir.file("none")},
           {"train", "--data", dir.file("none"), "extra-positional"},
           {"frobnicate"},
           {}}) {
    const CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_FALSE(r.err.empty()) << "a usage error says why on stderr";
  }
  const CommandResult r = run_cli({"train", "--bogus", "--data", dir.file("none")});
  EXPECT_TRUE(contains(r.err, "--bogus")) << describe(r);
}

TEST(Cli, BadValuesAreUsageErrorsNamingTheFlag) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> bad{
      {"--epochs", "0"},   {"--epochs", "-3"},    {"--epochs", "ten"},    {"--lr", "-1"},
      {"--lr", "0"},       {"--lr", "fast"},      {"--init", "foo"},      {"--device", "foo"},
      {"--hidden", "0"},   {"--hidden", "500,x"}, {"--hidden", "500,-1"}, {"--batch-size", "0"},
      {"--threads", "-1"}, {"--beta1", "1.5"},    {"--eps", "0"},         {"--profile-steps", "0"}};
  for (const auto& [flag, value] : bad) {
    const CommandResult r = run_cli({"train", "--data", dir.file("none"), flag, value});
    EXPECT_EQ(r.exit_code, 2) << flag << " " << value << "\n" << describe(r);
    EXPECT_TRUE(contains(r.err, flag)) << flag << " " << value << "\n" << describe(r);
  }
}

TEST(Cli, CudaRequestedWithoutCudaIsADeviceError) {
  if (cuda_compiled() && cuda_unavailable_reason().empty())
    GTEST_SKIP() << "a CUDA device is usable here; the error path cannot be reached";
  TempDir dir;
  const CommandResult r = run_cli({"train", "--device", "cuda", "--data", dir.file("none")});
  EXPECT_EQ(r.exit_code, 6) << describe(r);
  if (!cuda_compiled()) {
    EXPECT_TRUE(contains(r.err, "without CUDA")) << describe(r);
  }
  EXPECT_TRUE(contains(r.err, "--device cuda")) << describe(r);
}

TEST(Cli, MissingDataIsADataErrorNamingThePath) {
  TempDir dir;
  const std::string missing = dir.file("no-such-dir");
  const CommandResult r = run_cli({"train", "--device", "cpu", "--data", missing});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, missing + "/train-images-idx3-ubyte")) << describe(r);
  EXPECT_TRUE(contains(r.err, "fetch-data")) << describe(r);
}

TEST(Cli, MalformedDataIsADataErrorNamingTheFile) {
  TempDir dir;
  testing::write_split(dir.path(), "train", testing::make_split(20, 28, 28, 1), 28, 28);
  testing::write_split(dir.path(), "t10k", testing::make_split(5, 28, 28, 2), 28, 28);
  testing::write_text(dir.file("t10k-labels-idx1-ubyte"), "<html>Not Found</html>");
  const CommandResult r = run_cli({"train", "--device", "cpu", "--data", dir.path()});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, dir.file("t10k-labels-idx1-ubyte"))) << describe(r);
}

TEST(Cli, UnwritableLogJsonFailsBeforeTraining) {
  TempDir dir;
  for (const std::string& path : {dir.file("missing-dir/log.json"), dir.path()}) {
    const CommandResult r =
        run_cli({"train", "--device", "cpu", "--data", dir.file("none"), "--log-json", path});
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.exit_code, 3) << "the log file is checked before the data: " << describe(r);
    EXPECT_TRUE(contains(r.err, "--log-json")) << describe(r);
    EXPECT_TRUE(contains(r.err, path)) << describe(r);
  }
}

// The value CLI11 shows after '=' on the help line of `flag`, or "" if none.
std::string help_default(const std::string& help, const std::string& flag) {
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    const auto at = line.find(flag + " ");
    if (at == std::string::npos || line.find_first_not_of(' ') != at) continue;
    const auto eq = line.find('=', at);
    if (eq == std::string::npos) return "";
    return line.substr(eq + 1, line.find(' ', eq) - eq - 1);
  }
  return "";
}

TEST(Cli, HelpDocumentsEveryFlagWithItsDefault) {
  const CommandResult top = run_cli({"--help"});
  EXPECT_EQ(top.exit_code, 0) << describe(top);
  EXPECT_TRUE(contains(top.out, "train")) << describe(top);
  EXPECT_TRUE(contains(top.out, "info")) << describe(top);

  const CommandResult r = run_cli({"train", "--help"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string& h = r.out;
  for (const char* flag :
       {"--data",          "--epochs",    "--batch-size", "--lr",          "--beta1",
        "--beta2",         "--eps",       "--hidden",     "--init",        "--seed",
        "--device",        "--threads",   "--binarize",   "--tf32",        "--no-graph",
        "--profile-steps", "--log-json",  "--quiet",      "--lr-schedule", "--lr-gamma",
        "--lr-step",       "--lr-warmup", "--lr-min",     "--log-interval"})
    EXPECT_TRUE(contains(h, flag)) << flag << " is not documented\n" << h;

  // Defaults shown must be the ones the trainer really uses.
  const cli::RunConfig d;
  const auto num = [&](const std::string& flag) {
    const std::string v = help_default(h, flag);
    EXPECT_FALSE(v.empty()) << flag << " shows no default\n" << h;
    try {
      return v.empty() ? std::nan("") : std::stod(v);
    } catch (const std::exception&) {
      ADD_FAILURE() << flag << " default '" << v << "' is not a number";
      return std::nan("");
    }
  };
  EXPECT_EQ(help_default(h, "--data"), d.data_dir);
  EXPECT_EQ(num("--epochs"), static_cast<double>(d.epochs));
  EXPECT_EQ(num("--batch-size"), static_cast<double>(d.batch_size));
  EXPECT_EQ(static_cast<float>(num("--lr")), d.adam.lr);
  EXPECT_EQ(static_cast<float>(num("--beta1")), d.adam.beta1);
  EXPECT_EQ(static_cast<float>(num("--beta2")), d.adam.beta2);
  EXPECT_EQ(static_cast<float>(num("--eps")), d.adam.eps);
  EXPECT_EQ(num("--seed"), static_cast<double>(d.seed));
  std::string hidden;
  for (int64_t s : d.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(s);
  EXPECT_EQ(help_default(h, "--hidden"), hidden);
  EXPECT_EQ(help_default(h, "--init"), init_name(d.init));
  EXPECT_EQ(help_default(h, "--device"), "auto");
  EXPECT_EQ(num("--threads"), 0.0);
  EXPECT_EQ(num("--log-interval"), static_cast<double>(d.log_interval));
  const cli::ScheduleFlags lr;
  EXPECT_EQ(help_default(h, "--lr-schedule"), lr.kind);
  EXPECT_EQ(static_cast<float>(num("--lr-gamma")), lr.gamma);
  EXPECT_EQ(num("--lr-step"), static_cast<double>(lr.step_epochs));
  EXPECT_EQ(num("--lr-warmup"), static_cast<double>(lr.warmup_steps));
  EXPECT_EQ(static_cast<float>(num("--lr-min")), lr.min_lr);
}

TEST(Cli, VersionAndInfoSucceed) {
  const CommandResult v = run_cli({"--version"});
  EXPECT_EQ(v.exit_code, 0) << describe(v);
  EXPECT_TRUE(contains(v.out, MLP_VERSION)) << describe(v);
  const CommandResult i = run_cli({"info"});
  EXPECT_EQ(i.exit_code, 0) << describe(i);
  EXPECT_TRUE(contains(i.out, "CPU backend")) << describe(i);
}

// ---- a tiny real run -----------------------------------------------------------------

std::vector<nlohmann::json> json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(testing::read_text(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

bool finite_number(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() && std::isfinite(j[key].get<double>());
}

TEST(Cli, TrainsATinyDatasetAndLogsJsonLinesReproducibly) {
  TempDir dir;
  testing::write_split(dir.path(), "train", testing::make_split(200, 28, 28, 1), 28, 28);
  testing::write_split(dir.path(), "t10k", testing::make_split(50, 28, 28, 2), 28, 28, true);
  const auto run = [&](const std::string& log, bool quiet) {
    std::vector<std::string> args{
        "train", "--device",     "cpu", "--data",     dir.path(), "--epochs",
        "2",     "--batch-size", "20",  "--hidden",   "16,8",     "--threads",
        "1",     "--seed",       "5",   "--log-json", log};
    if (quiet) args.push_back("--quiet");
    return run_cli(args);
  };
  const CommandResult r = run(dir.file("a.json"), false);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "final test accuracy")) << describe(r);
  EXPECT_TRUE(contains(r.out, "784-16-8-10")) << "the header names the network\n" << describe(r);

  const auto a = json_lines(dir.file("a.json"));
  ASSERT_EQ(a.size(), 4u) << "start, 2 epochs, summary";
  EXPECT_EQ(a[0]["event"], "start");
  for (int e = 1; e <= 2; ++e) {
    const auto& j = a[static_cast<std::size_t>(e)];
    EXPECT_EQ(j["event"], "epoch");
    EXPECT_EQ(j["epoch"], e);
    for (const char* key :
         {"loss", "train_accuracy", "test_accuracy", "seconds", "samples_per_sec"})
      EXPECT_TRUE(finite_number(j, key)) << key << " in " << j.dump();
    EXPECT_TRUE(j["test_accuracy"].get<double>() >= 0 && j["test_accuracy"].get<double>() <= 1);
  }
  EXPECT_EQ(a[3]["event"], "summary");
  EXPECT_TRUE(finite_number(a[3], "test_accuracy") && finite_number(a[3], "train_seconds"));
  EXPECT_EQ(a[3]["test_accuracy"], a[2]["test_accuracy"]) << "the summary reports the last epoch";

  // Same seed, same threads: the same losses, bit for bit. --quiet prints only the result.
  const CommandResult q = run(dir.file("b.json"), true);
  ASSERT_EQ(q.exit_code, 0) << describe(q);
  EXPECT_EQ(std::count(q.out.begin(), q.out.end(), '\n'), 1) << describe(q);
  EXPECT_TRUE(contains(q.out, "final test accuracy")) << describe(q);
  const auto b = json_lines(dir.file("b.json"));
  ASSERT_EQ(b.size(), a.size());
  for (std::size_t i = 1; i + 1 < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "epoch " << i;
    EXPECT_EQ(a[i]["test_accuracy"], b[i]["test_accuracy"]) << "epoch " << i;
  }
}

}  // namespace
}  // namespace mlp
