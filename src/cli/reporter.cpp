// Reporter: see reporter.h.
#include "cli/reporter.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mlp/error.h"

namespace mlp::cli {

Reporter::Reporter(bool quiet, const std::string& json_path)
    : quiet_(quiet), tty_(::isatty(STDERR_FILENO) == 1), json_path_(json_path) {
  if (!json_path.empty()) {
    json_ = std::fopen(json_path.c_str(), "w");
    if (!json_)
      throw Error(ExitCode::kUsage, fmt::format("--log-json {}: cannot open for writing: {}",
                                                json_path, std::strerror(errno)));
  }
}

Reporter::~Reporter() {
  if (json_) std::fclose(json_);
}

void Reporter::event(nlohmann::json j) {
  if (!json_) return;
  const std::string line = j.dump() + "\n";
  if (std::fputs(line.c_str(), json_) < 0 || std::fflush(json_) != 0)
    throw LogWriteError(ExitCode::kFailure, fmt::format("--log-json {}: write failed: {}",
                                                        json_path_, std::strerror(errno)));
}

void Reporter::say(const std::string& line) {
  if (quiet_) return;
  clear_progress();
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

void Reporter::warn(const std::string& line) {
  clear_progress();
  std::fflush(stdout);
  fmt::print(stderr, "mnist-mlp: warning: {}\n", line);
  event({{"event", "warning"}, {"message", line}});
}

void Reporter::header(const nlohmann::json& fields, const std::string& text) {
  if (fields.contains("epochs")) epochs_total_ = fields["epochs"].get<int64_t>();
  nlohmann::json j = fields;
  j["event"] = "start";
  event(j);
  if (!quiet_) fmt::print("{}", text);
  std::fflush(stdout);
}

void Reporter::on_epoch_begin(int64_t epoch, int64_t) {
  epoch_ = epoch;
  epoch_start_ = std::chrono::steady_clock::now();
  last_draw_ = {};
}

void Reporter::clear_progress() {
  if (progress_drawn_) {
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
    progress_drawn_ = false;
  }
}

void Reporter::on_step(int64_t step, int64_t steps) {
  if (quiet_ || !tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (step != steps && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * step / steps);
  const double secs = std::chrono::duration<double>(now - epoch_start_).count();
  // Steps issued per second: on CUDA the host runs at most a few steps ahead of the GPU.
  fmt::print(stderr, "\repoch {:>3}/{} [{}{}] {:>6}/{} steps  {:>7.0f} steps/s", epoch_,
             epochs_total_, std::string(static_cast<std::size_t>(filled), '#'),
             std::string(static_cast<std::size_t>(kWidth - filled), '.'), step, steps,
             secs > 0 ? static_cast<double>(step) / secs : 0.0);
  std::fflush(stderr);
  progress_drawn_ = true;
}

bool Reporter::on_epoch_end(const EpochStats& s) {
  const std::string test =
      s.evaluated ? fmt::format("{:6.2f}%", 100 * s.test_accuracy) : std::string("      -");
  say(fmt::format(
      "epoch {:>3}/{}  loss {:.4f}  train {:6.2f}%  test {}  {:7.2f} s  "
      "{:>8.0f} samples/s",
      s.epoch, epochs_total_, s.loss, 100 * s.train_accuracy, test, s.seconds, s.samples_per_sec));
  event({{"event", "epoch"},
         {"epoch", s.epoch},
         {"steps", s.steps},
         {"loss", s.loss},
         {"train_accuracy", s.train_accuracy},
         {"test_loss", s.test_loss},
         {"test_accuracy", s.test_accuracy},
         {"seconds", s.seconds},
         {"samples_per_sec", s.samples_per_sec}});
  return true;
}

void Reporter::summary(const EpochStats* last, double train_seconds, int64_t epochs_run) {
  clear_progress();
  const double acc = last ? last->test_accuracy : 0.0;
  event({{"event", "summary"},
         {"epochs", epochs_run},
         {"test_accuracy", acc},
         {"test_loss", last ? last->test_loss : 0.0},
         {"train_seconds", train_seconds}});
  // The result line is printed even with --quiet: it is what a script greps for.
  fmt::print("final test accuracy {:.2f}% after {} epoch{}, {:.1f} s training\n", 100 * acc,
             epochs_run, epochs_run == 1 ? "" : "s", train_seconds);
  std::fflush(stdout);
}

}  // namespace mlp::cli
