// Reporter: see reporter.h.
#include "cli/reporter.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "mlp/error.h"

namespace mlp::cli {
namespace {

// Whether a bar is on the terminal now, for clear_line_async_signal_safe().
std::atomic<bool> g_bar_drawn{false};
static_assert(std::atomic<bool>::is_always_lock_free, "read from a signal handler");

constexpr int kMinBar = 10;
constexpr int kMaxBar = 30;

std::string plural(int64_t n, const char* word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

// The richest layout that fits: fields go in the order acc, samples/s, the
// run's ETA, then the bar, then the epoch's time; "epoch e/E" and the step
// count stay longest.
std::string format_progress(const ProgressView& v, int width) {
  const int room = width - 1;
  const std::string epoch = fmt::format("epoch {}/{}", v.epoch, v.epochs);
  const std::string count =
      fmt::format("{:>{}}/{}", v.step, std::to_string(v.steps).size(), v.steps);
  const std::string time = format_duration(v.epoch_elapsed) + "<" + format_duration(v.epoch_eta);
  const std::string run =
      "total " + format_duration(v.run_elapsed) + "<" + format_duration(v.run_eta);
  const std::string speed = fmt::format("{:.0f} samples/s", v.samples_per_sec);
  const std::string loss = v.has_running ? fmt::format("loss {:.4f}", v.running_loss) : "";
  const std::string acc = v.has_running ? fmt::format("acc {:.2f}%", 100 * v.running_accuracy) : "";
  const std::string bar = "\x01";  // placeholder for the bar, sized below
  const std::vector<std::vector<const std::string*>> layouts = {
      {&epoch, &bar, &count, &time, &run, &speed, &loss, &acc},
      {&epoch, &bar, &count, &time, &run, &speed, &loss},
      {&epoch, &bar, &count, &time, &run, &loss},
      {&epoch, &bar, &count, &time, &loss},
      {&epoch, &count, &time, &loss},
      {&epoch, &count, &loss},
      {&epoch, &count},
  };
  const double frac = v.steps > 0 ? static_cast<double>(v.step) / static_cast<double>(v.steps) : 0;
  for (const auto& fields : layouts) {
    int fixed = 0;
    bool has_bar = false;
    int n = 0;
    for (const std::string* f : fields) {
      if (f->empty()) continue;
      if (f == &bar) {
        has_bar = true;
        fixed += 2;  // the brackets
      } else {
        fixed += static_cast<int>(f->size());
      }
      ++n;
    }
    fixed += n - 1;  // one space between fields
    const int bar_width = std::min(kMaxBar, room - fixed);
    if (has_bar ? bar_width < kMinBar : fixed > room) continue;
    std::string line;
    for (const std::string* f : fields) {
      if (f->empty()) continue;
      if (!line.empty()) line += ' ';
      if (f == &bar) {
        const int filled = std::clamp(static_cast<int>(bar_width * frac), 0, bar_width);
        line += '[' + std::string(static_cast<std::size_t>(filled), '#') +
                std::string(static_cast<std::size_t>(bar_width - filled), '.') + ']';
      } else {
        line += *f;
      }
    }
    return line;
  }
  const std::string tiny = epoch + " " + count;
  return tiny.substr(0, static_cast<std::size_t>(std::max(room, 0)));
}

std::string wrap_header(const std::string& text, int width) {
  std::string out;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    const std::string indent(7, ' ');  // under the value column ("model  ...")
    while (static_cast<int>(line.size()) > width - 1) {
      // Break at the last space that fits, never inside a word.
      const std::size_t cut = line.rfind(' ', static_cast<std::size_t>(width - 1));
      if (cut == std::string::npos || cut <= indent.size()) break;
      out += line.substr(0, cut) + '\n';
      line = indent + line.substr(cut + 1);
    }
    out += line;
    if (end < text.size()) out += '\n';
    begin = end + 1;
  }
  return out;
}

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
  clear_progress();
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
  if (fields.contains("steps_per_epoch"))
    steps_per_epoch_ = fields["steps_per_epoch"].get<int64_t>();
  if (fields.contains("batch_size")) batch_size_ = fields["batch_size"].get<int64_t>();
  if (fields.contains("lr_schedule"))
    scheduled_ = fields["lr_schedule"] != "constant" || fields.value("lr_warmup_steps", 0) > 0;
  nlohmann::json j = fields;
  j["event"] = "start";
  event(j);
  // 120 columns is the widest terminal the header has to fit without wrapping.
  if (!quiet_) fmt::print("{}", wrap_header(text, 120));
  std::fflush(stdout);
}

void Reporter::on_epoch_begin(int64_t epoch, int64_t) {
  epoch_ = epoch;
  epoch_start_ = std::chrono::steady_clock::now();
  if (run_first_step_ < 0) run_start_ = epoch_start_;
  epoch_first_step_ = -1;
  last_draw_ = {};
}

void Reporter::clear_progress() {
  if (progress_drawn_) {
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
    progress_drawn_ = false;
    g_bar_drawn.store(false);
  }
}

bool Reporter::clear_line_async_signal_safe() {
  if (!g_bar_drawn.exchange(false)) return false;
  static const char kClear[] = "\r\033[K";
  const ssize_t n = ::write(STDERR_FILENO, kClear, sizeof(kClear) - 1);
  (void)n;  // nothing useful can be done if stderr is gone
  return true;
}

int Reporter::terminal_width() const {
  // Asked at every redraw (a cheap ioctl), so a resized terminal is followed
  // without a SIGWINCH handler.
  struct winsize ws {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

void Reporter::on_step(int64_t step, int64_t steps) {
  if (epoch_first_step_ < 0) epoch_first_step_ = step - 1;
  if (run_first_step_ < 0) run_first_step_ = (epoch_ - 1) * steps + step - 1;
  ++run_steps_;
  if (quiet_ || !tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (step != steps && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  ProgressView v;
  v.epoch = epoch_;
  v.epochs = epochs_total_;
  v.step = step;
  v.steps = steps;
  v.epoch_elapsed = std::chrono::duration<double>(now - epoch_start_).count();
  v.run_elapsed = std::chrono::duration<double>(now - run_start_).count();
  const auto epoch_done = static_cast<double>(step - epoch_first_step_);
  // Steps issued per second: on CUDA the host runs at most a few steps ahead of the GPU.
  if (v.epoch_elapsed > 0 && epoch_done > 0) {
    const double rate = epoch_done / v.epoch_elapsed;
    v.epoch_eta = static_cast<double>(steps - step) / rate;
    v.samples_per_sec = rate * static_cast<double>(batch_size_);
  }
  const int64_t run_total = epochs_total_ * steps_per_epoch_;
  const int64_t run_at = (epoch_ - 1) * steps + step;
  if (v.run_elapsed > 0 && run_steps_ > 0 && run_total >= run_at) {
    // Over the run's wall time, so the test evaluations are in the ETA too.
    const double rate = static_cast<double>(run_steps_) / v.run_elapsed;
    v.run_eta = static_cast<double>(run_total - run_at) / rate;
  }
  v.has_running = has_running_;
  v.running_loss = running_loss_;
  v.running_accuracy = running_accuracy_;
  fmt::print(stderr, "\r{}\033[K", format_progress(v, terminal_width()));
  std::fflush(stderr);
  progress_drawn_ = true;
  g_bar_drawn.store(true);
}

void Reporter::on_interval(const IntervalStats& s) {
  has_running_ = true;
  running_loss_ = s.loss;
  running_accuracy_ = s.train_accuracy;
  event({{"event", "interval"},
         {"epoch", s.epoch},
         {"step", s.step},
         {"global_step", s.global_step},
         {"steps", s.steps},
         {"loss", s.loss},
         {"train_accuracy", s.train_accuracy},
         {"samples_per_sec", s.samples_per_sec},
         {"lr", s.lr}});
}

bool Reporter::on_epoch_end(const EpochStats& s) {
  const std::string test = s.evaluated ? fmt::format("test loss {:.4f}  test {:6.2f}%", s.test_loss,
                                                     100 * s.test_accuracy)
                                       : std::string("test -");
  say(
      fmt::format("epoch {:>3}/{}  loss {:.4f}  train {:6.2f}%  {}  {:7.2f} s  "
                  "{:>8.0f} samples/s{}",
                  s.epoch, epochs_total_, s.loss, 100 * s.train_accuracy, test, s.seconds,
                  s.samples_per_sec, scheduled_ ? fmt::format("  lr {:.3g}", s.lr) : ""));
  event({{"event", "epoch"},
         {"epoch", s.epoch},
         {"steps", s.steps},
         {"loss", s.loss},
         {"train_accuracy", s.train_accuracy},
         {"test_loss", s.test_loss},
         {"test_accuracy", s.test_accuracy},
         {"seconds", s.seconds},
         {"samples_per_sec", s.samples_per_sec},
         {"lr", s.lr}});
  return true;
}

void Reporter::summary(const EpochStats* last, double train_seconds, int64_t epochs_total,
                       int64_t epochs_run) {
  clear_progress();
  const double acc = last ? last->test_accuracy : 0.0;
  event({{"event", "summary"},
         {"epochs", epochs_total},
         {"epochs_this_run", epochs_run},
         {"test_accuracy", acc},
         {"test_loss", last ? last->test_loss : 0.0},
         {"train_seconds", train_seconds}});
  // The result line is printed even with --quiet: it is what a script greps for.
  // A resumed run counts the epochs of the whole run, then says how many ran now.
  const std::string now =
      epochs_run == epochs_total ? "" : fmt::format(" ({} in this run)", epochs_run);
  fmt::print("final test accuracy {:.2f}% after {}{}, {:.1f} s training\n", 100 * acc,
             plural(epochs_total, "epoch"), now, train_seconds);
  std::fflush(stdout);
}

}  // namespace mlp::cli
