// ThreadPool: the CPU backend's only threads besides the loader. OpenBLAS runs
// single-threaded inside each task and this pool splits every op (the GEMMs
// included) across cores, so exactly one set of threads ever competes for the
// cores: two pools that both spin between calls (OpenBLAS's and OpenMP's) made
// a 2-core epoch several times slower.
//
// Workers spin briefly after a task (the next op follows within microseconds),
// then sleep on a condition variable, so an idle or oversubscribed machine is
// not burned. run() may only be called from one thread at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace mlp::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads - 1 workers; the caller is the last
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task) for every task in [0, tasks), spread over the pool and the
  // calling thread; returns when all have finished.
  template <class F>
  void run(int tasks, const F& fn) {
    if (tasks <= 1 || workers_.empty()) {
      for (int t = 0; t < tasks; ++t) fn(t);
      return;
    }
    run_erased(
        tasks, [](const void* f, int t) { (*static_cast<const F*>(f))(t); }, &fn);
  }

  // Splits [0, n) into at most size() contiguous chunks of at least min_chunk
  // elements, starts rounded to `align`, and calls fn(begin, end) for each.
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

 private:
  using Thunk = void (*)(const void* fn, int task);
  void run_erased(int tasks, Thunk thunk, const void* fn);
  void worker_main();
  void drain();  // claims and runs tasks of the current job until none are left

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};  // bumped once per run()
  std::atomic<int> sleepers_{0};
  std::atomic<int> next_task_{0};
  std::atomic<int> unfinished_workers_{0};
  std::atomic<bool> stop_{false};
  int tasks_ = 0;
  Thunk thunk_ = nullptr;
  const void* fn_ = nullptr;
};

}  // namespace mlp::cpu
