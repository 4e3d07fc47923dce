// Ctrl-C during training. The first SIGINT asks the attached Trainer to stop
// after the step in progress (the caller then saves, says where, and exits
// 130); a second SIGINT, or one while no trainer is attached, ends the process
// at once with _exit(130). Because saves are atomic, even that never leaves a
// torn checkpoint behind. The handler only stores to lock-free atomics and
// calls write(2), so it is async-signal-safe.
#pragma once

#include "mlp/trainer.h"

namespace mlp {

class InterruptGuard {
 public:
  InterruptGuard();   // installs the SIGINT handler; one guard at a time
  ~InterruptGuard();  // restores the handler that was there before
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // True once a SIGINT arrived while this guard was installed.
  bool interrupted() const;

  // Routes the first SIGINT to `t` while the returned object lives; declare it
  // after the Trainer so it detaches before the Trainer is destroyed.
  class Attachment {
   public:
    explicit Attachment(Trainer& t);
    ~Attachment();
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;
  };
};

}  // namespace mlp
