// Reporter: what a training run shows. Humans get a header, a progress bar on
// stderr when it is a terminal (plain epoch lines otherwise) and one line per
// epoch on stdout; machines get JSON lines in --log-json FILE, flushed per line
// so a crashed run still leaves its epochs behind.
#pragma once

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "mlp/error.h"
#include "mlp/trainer.h"

namespace mlp::cli {

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
  void header(const nlohmann::json& fields, const std::string& text);
  void on_epoch_begin(int64_t epoch, int64_t steps) override;
  void on_step(int64_t step, int64_t steps) override;
  bool on_epoch_end(const EpochStats& s) override;
  void summary(const EpochStats* last, double train_seconds, int64_t epochs_run);
  void event(nlohmann::json j);        // any other JSON line (checkpoint saved, ...)
  void say(const std::string& line);   // a human line unless --quiet
  void warn(const std::string& line);  // "mnist-mlp: warning: ..." on stderr, even with --quiet

 private:
  void clear_progress();
  bool quiet_;
  bool tty_;
  std::FILE* json_ = nullptr;
  std::string json_path_;
  int64_t epochs_total_ = 0;
  int64_t epoch_ = 0;
  std::chrono::steady_clock::time_point epoch_start_, last_draw_;
  bool progress_drawn_ = false;
};

}  // namespace mlp::cli
