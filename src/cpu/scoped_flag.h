// ScopedFlag: sets a (thread-local) flag for its lifetime and restores the
// value it had, also when an exception leaves the scope. For the CPU backend's
// per-thread modes: ThreadPool's "inside a task" and cpu::WholeGemms.
#pragma once

namespace mlp::cpu {

class ScopedFlag {
 public:
  explicit ScopedFlag(bool& flag) : flag_(flag), was_(flag) { flag_ = true; }
  ~ScopedFlag() { flag_ = was_; }
  ScopedFlag(const ScopedFlag&) = delete;
  ScopedFlag& operator=(const ScopedFlag&) = delete;

 private:
  bool& flag_;
  bool was_;
};

}  // namespace mlp::cpu
