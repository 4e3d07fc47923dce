// ThreadPool: the CPU backend's only threads besides the loader. OpenBLAS and
// oneDNN run single-threaded inside each task and this pool splits every op
// (the GEMMs included) across cores, so exactly one set of threads ever
// competes for the cores: two pools that both spin between calls (OpenBLAS's
// and OpenMP's) made a 2-core epoch several times slower.
//
// Never slower than one thread, even beside a CPU-bound neighbour:
// - workers spin a bounded ~50 us after a task (the next op follows within
//   microseconds), then block on a futex; the caller waits for stragglers the
//   same way, so a descheduled worker gets a free core instead of a spinner;
// - tasks are claimed dynamically, so a late worker finds its share done;
// - the pool measures itself: when a window of parallel runs was not clearly
//   faster than its own serial estimate (the caller's mean task time x tasks),
//   it runs every task on the caller for a back-off period (50 ms doubling to
//   1 s), then tries again. Which thread runs a task never changes what the
//   task computes, so results do not depend on any of this.
// Worker threads block all signals: they go to the main thread (src/cli/signals.*).
// Workers flush subnormal floats to zero, or keep them, as the constructor says,
// for their whole life (src/cpu/denormals.h); the caller's mode is its own.
// run() may only be called from one thread at a time (or from inside a task,
// where it runs inline).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace mlp::cpu {

class ThreadPool {
 public:
  // threads - 1 workers; the caller is the last.
  explicit ThreadPool(int threads, bool flush_denormals = false);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // True on a thread while it runs a task of some pool's run(): a run() from
  // inside a task (work split further) runs its tasks inline on that thread.
  static bool inside_task();

  // Calls fn(task) for every task in [0, tasks), spread over the pool and the
  // calling thread; returns when all have finished.
  template <class F>
  void run(int tasks, const F& fn) {
    if (tasks <= 1 || workers_.empty() || inside_task()) {
      for (int t = 0; t < tasks; ++t) fn(t);
      return;
    }
    run_erased(
        tasks, [](const void* f, int t) { (*static_cast<const F*>(f))(t); }, &fn);
  }

  // Splits [0, n) into at most size() contiguous chunks of at least min_chunk
  // elements, starts rounded to `align`, and calls fn(begin, end) for each.
  // The split depends only on n, min_chunk, align and size().
  template <class F>
  void parallel_for(int64_t n, int64_t min_chunk, int64_t align, const F& fn) {
    const int64_t by_size = min_chunk > 0 ? n / min_chunk : n;
    const int tasks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(size(), by_size)));
    if (tasks == 1) {
      fn(int64_t{0}, n);
      return;
    }
    const auto bound = [&](int t) {
      if (t == tasks) return n;
      const int64_t b = n * t / tasks;
      return std::min(n, (b + align - 1) / align * align);
    };
    run(tasks, [&](int t) {
      const int64_t b = bound(t), e = bound(t + 1);
      if (b < e) fn(b, e);
    });
  }

  // For the bench and tests: runs that went parallel / ran on the caller alone
  // because the pool backed off, since construction.
  int64_t parallel_runs() const { return parallel_runs_; }
  int64_t serial_runs() const { return serial_runs_; }

 private:
  using Thunk = void (*)(const void* fn, int task);
  using Clock = std::chrono::steady_clock;
  void run_erased(int tasks, Thunk thunk, const void* fn);
  void worker_main();
  // Claims the next task of the current job and runs it; false when none was
  // left. *generation: the job the claim named.
  bool run_one_claimed(uint32_t* generation);
  void wait_for_done(int tasks);
  // After a parallel run: keep going parallel, or back off (see above).
  void judge(Clock::duration took, Clock::duration serial_estimate);

  std::vector<std::thread> workers_;
  // job_: generation (32 bits) | task count (16) | next task to claim (16).
  // One word, so a claim always names the job it belongs to.
  std::atomic<uint64_t> job_{0};
  std::atomic<uint32_t> wake_{0};  // futex word: the generation, for sleeping workers
  std::atomic<int> sleepers_{0};
  std::atomic<uint32_t> done_{0};  // futex word: tasks of the current job finished
  std::atomic<int> caller_waiting_{0};
  std::atomic<bool> stop_{false};
  Thunk thunk_ = nullptr;
  const void* fn_ = nullptr;

  // Contention detector state (caller thread only).
  int window_runs_ = 0;
  Clock::duration window_took_{}, window_serial_{};
  Clock::time_point serial_until_{};
  Clock::duration backoff_ = std::chrono::milliseconds(50);
  int64_t parallel_runs_ = 0, serial_runs_ = 0;
};

}  // namespace mlp::cpu
