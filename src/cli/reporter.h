// Reporter: what a training run shows. Humans get a header, a progress bar on
// stderr when it is a terminal (plain epoch lines otherwise) and one line per
// epoch on stdout; machines get JSON lines in --log-json FILE, flushed per line
// so a crashed run still leaves its epochs behind.
// The bar redraws in place ("\r", the line, clear-to-end-of-line), at most ten
// times a second, and re-reads the terminal's width at every redraw, dropping
// fields (accuracy, throughput, the run's ETA, the bar itself) until it fits:
// a line that reached the last column would wrap and stack up.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "mlp/error.h"
#include "mlp/trainer.h"

namespace mlp::cli {

// What the bar shows, and the width it must fit in (columns).
struct ProgressView {
  int64_t epoch = 0, epochs = 0;  // 1-based epoch of epochs
  int64_t step = 0, steps = 0;    // steps done of steps in this epoch
  double epoch_elapsed = 0;       // seconds since the epoch (or its resumed part) began
  double epoch_eta = -1;          // seconds left in the epoch (< 0: not known yet)
  double run_elapsed = 0;         // seconds since this run began
  double run_eta = -1;            // seconds left in the run (< 0: not known yet)
  double samples_per_sec = 0;
  bool has_running = false;  // the last --log-interval's loss and accuracy are known
  double running_loss = 0, running_accuracy = 0;
};
// One line of at most width - 1 columns (never the last column: some terminals
// wrap there). Pure, so the tests check every width.
std::string format_progress(const ProgressView& v, int width);
// "0:07", "12:34", "1:02:03"
std::string format_duration(double seconds);
// Each line of `text` broken at spaces into lines of at most width - 1
// columns, continuations indented by 7 (the header's value column).
std::string wrap_header(const std::string& text, int width);

// A --log-json write failed (disk full): train saves its checkpoint before exiting.
class LogWriteError : public Error {
 public:
  using Error::Error;
};

class Reporter final : public TrainListener {
 public:
  Reporter(bool quiet, const std::string& json_path);
  ~Reporter() override;
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  // key/value lines for the header; also the "start" JSON event's fields
  // ("epochs" and "steps_per_epoch" size the run's ETA).
  void header(const nlohmann::json& fields, const std::string& text);
  void on_epoch_begin(int64_t epoch, int64_t steps) override;
  void on_step(int64_t step, int64_t steps) override;
  void on_interval(const IntervalStats& s) override;
  bool on_epoch_end(const EpochStats& s) override;
  // epochs_total: complete epochs of the whole run (a resume's earlier ones
  // included); epochs_run: those this process trained.
  void summary(const EpochStats* last, double train_seconds, int64_t epochs_total,
               int64_t epochs_run);
  void event(nlohmann::json j);        // any other JSON line (checkpoint saved, ...)
  void say(const std::string& line);   // a human line unless --quiet
  void warn(const std::string& line);  // "mnist-mlp: warning: ..." on stderr, even with --quiet
  // Erases the progress bar, if one is drawn, so that a message written to
  // stderr next starts on a clean line (the stop path calls it before its message).
  void clear_line() { clear_progress(); }
  // The same from a signal handler: only write(2) and a lock-free atomic.
  static bool clear_line_async_signal_safe();  // true: a bar was erased

 private:
  void clear_progress();
  int terminal_width() const;
  bool quiet_;
  bool tty_;
  std::FILE* json_ = nullptr;
  std::string json_path_;
  int64_t epochs_total_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t batch_size_ = 0;
  bool scheduled_ = false;  // the lr moves: epoch lines show it
  int64_t epoch_ = 0;
  std::chrono::steady_clock::time_point epoch_start_, last_draw_, run_start_;
  int64_t epoch_first_step_ = -1;  // the step the epoch (segment) started from
  int64_t run_first_step_ = -1;    // global step the run started from (a resume's)
  int64_t run_steps_ = 0;          // steps this run issued
  bool has_running_ = false;
  double running_loss_ = 0, running_accuracy_ = 0;
  bool progress_drawn_ = false;
};

}  // namespace mlp::cli
