// Stop signals during training: SIGINT (Ctrl-C), SIGTERM (timeout, Slurm,
// docker, systemd) and SIGHUP (a closed terminal). The first one asks the
// attached Trainer to stop after the step in progress (the caller then saves,
// says where, and exits 128 + signal); a second one, or one while no trainer
// is attached, ends the process at once with _exit(128 + signal). Because
// saves are atomic, even that never leaves a torn checkpoint behind.
// SIGPIPE is handled too: a closed stdout/stderr pipe (`train ... | head -1`)
// no longer kills the run; the closed stream is pointed at /dev/null and the
// run goes on (main() then reports the lost output). The handlers only store
// to lock-free atomics and call write/poll/open/dup2, all async-signal-safe.
#pragma once

#include "mlp/trainer.h"

namespace mlp {

// SIGPIPE -> the broken standard stream is silenced instead of the process
// killed. Installed once by main() for every command.
void install_broken_pipe_handler();
// True once a write to a closed stdout pipe was silenced.
bool stdout_pipe_closed();

class InterruptGuard {
 public:
  InterruptGuard();   // installs the SIGINT/SIGTERM/SIGHUP handler; one guard at a time
  ~InterruptGuard();  // restores the handlers that were there before
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // True once a stop signal arrived while this guard was installed.
  bool interrupted() const;
  // The first stop signal that arrived (SIGINT, SIGTERM, SIGHUP), 0 if none.
  int signal_number() const;
  // "Ctrl-C (SIGINT)", "SIGTERM", "SIGHUP" for messages.
  static const char* signal_name(int sig);

  // Routes the first stop signal to `t` while the returned object lives;
  // declare it after the Trainer so it detaches before the Trainer is destroyed.
  class Attachment {
   public:
    explicit Attachment(Trainer& t);
    ~Attachment();
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;
  };
};

}  // namespace mlp
