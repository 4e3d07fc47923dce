// Helpers shared by the issue-10 robustness tests (test_robustness*.cpp): a
// small random MNIST-shaped data set, a trained checkpoint, and running the
// real binary with its stdout on a given descriptor.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint_testing.h"

namespace mlp::robustness {

using testing::Child;
using testing::cli;
using testing::CommandResult;
using testing::read_bytes;
using testing::run_command;
using testing::TempDir;

using testing::contains;
using testing::describe;

// 6000 random 28x28 training images (600 steps of batch 10 per epoch).
inline const std::string& data_dir() {
  static TempDir dir;
  static bool written = false;
  if (!written) {
    testing::write_split(dir.path(), "train", testing::make_split(6000, 28, 28, 21), 28, 28);
    testing::write_split(dir.path(), "t10k", testing::make_split(200, 28, 28, 22), 28, 28);
    written = true;
  }
  return dir.path();
}

inline std::vector<std::string> train_args(std::vector<std::string> extra, bool quiet = true,
                                           const std::string& hidden = "32") {
  std::vector<std::string> a{cli(),       "train", "--data",   data_dir(), "--device",     "cpu",
                             "--threads", "1",     "--hidden", hidden,     "--batch-size", "10"};
  if (quiet) a.push_back("-q");
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// A small trained checkpoint, written once.
inline const std::string& model_path() {
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
inline CommandResult run_with_stdout(const std::vector<std::string>& argv, int out_fd,
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
inline long dead_pid() {
  const CommandResult r = run_command({"/bin/sh", "-c", "echo $$"});
  return std::stol(r.out);
}

}  // namespace mlp::robustness
