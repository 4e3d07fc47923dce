// Helpers for the checkpoint, fault, predict and export tests: random
// checkpoints, an independent double-precision forward pass (the reference
// predict and eval are checked against), and a child process that can be
// signalled while it runs. Builds on tests/testing.h.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "mlp/checkpoint.h"
#include "testing.h"

namespace mlp::testing {

inline std::string cli() { return MLP_CLI_PATH; }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string s = read_text(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A valid checkpoint with random parameters and moments (no training needed):
// the network sizes are arbitrary, padding floats stay zero as in a real run.
inline Checkpoint random_checkpoint(std::vector<int64_t> sizes, int64_t rows, int64_t cols,
                                    uint64_t seed) {
  Checkpoint c;
  c.sizes = std::move(sizes);
  c.image_rows = rows;
  c.image_cols = cols;
  c.batch_size = 10;
  c.seed = seed;
  c.epochs = 3;
  c.train_count = 105;  // 10 steps per epoch
  c.train_labels_crc = 0x1234abcd;
  c.epochs_done = 1;
  c.step_in_epoch = 4;
  c.epoch_loss_sum = 12.5;
  c.epoch_correct = 17;
  c.state.step = 14;
  const ParamLayout layout(c.sizes);
  const auto total = static_cast<std::size_t>(layout.total_floats());
  c.state.params.assign(total, 0.0f);
  c.state.m.assign(total, 0.0f);
  c.state.v.assign(total, 0.0f);
  Pcg32 rng(seed, 5);
  for (const TensorView& t : tensor_views(layout))
    for (int64_t i = 0; i < t.rows * t.cols; ++i) {
      const auto k = static_cast<std::size_t>(t.offset + i);
      c.state.params[k] = static_cast<float>(rng.normal() * 0.3);
      c.state.m[k] = static_cast<float>(rng.normal() * 0.01);
      c.state.v[k] = static_cast<float>(rng.uniform_open0() * 1e-4);
    }
  return c;
}

// Softmax probabilities of the MLP on one image, in double with plain loops:
// independent of the Backend ops that predict and eval use.
inline std::vector<double> reference_probabilities(const Checkpoint& c, const uint8_t* pixels) {
  const ParamLayout layout(c.sizes);
  std::vector<double> a(static_cast<std::size_t>(c.sizes[0]));
  for (std::size_t i = 0; i < a.size(); ++i)
    a[i] = c.binarize ? (pixels[i] > 127 ? 1.0 : 0.0) : pixels[i] / 255.0;
  for (int64_t l = 0; l < layout.layers(); ++l) {
    const int64_t in = layout.fan_in(l), out = layout.fan_out(l);
    const float* w = c.state.params.data() + layout.weight_offset(l);
    const float* b = c.state.params.data() + layout.bias_offset(l);
    std::vector<double> z(static_cast<std::size_t>(out));
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t i = 0; i < in; ++i) s += a[static_cast<std::size_t>(i)] * w[i * out + o];
      z[static_cast<std::size_t>(o)] = l + 1 < layout.layers() ? std::max(s, 0.0) : s;
    }
    a = std::move(z);
  }
  const double mx = *std::max_element(a.begin(), a.end());
  double sum = 0;
  for (double& v : a) sum += v = std::exp(v - mx);
  for (double& v : a) v /= sum;
  return a;
}

// A child process whose output goes to files, so the test can signal it.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    out_ = dir_.file("stdout");
    err_ = dir_.file("stderr");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool started() const { return pid_ > 0; }
  void signal(int sig) const { ::kill(pid_, sig); }
  // Exit status (128 + signal when killed by one), or -1 on timeout.
  int wait(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      if (std::chrono::steady_clock::now() > end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::string out() const { return read_text(out_); }
  std::string err() const { return read_text(err_); }

 private:
  TempDir dir_;
  std::string out_, err_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Polls until `path` contains `text` or the timeout passes.
inline bool wait_for_text(const std::string& path, const std::string& text, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (read_text(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Files in dir whose name contains `part` (leftover temporaries).
inline int count_files_containing(const std::string& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().find(part) != std::string::npos) ++n;
  return n;
}

}  // namespace mlp::testing
