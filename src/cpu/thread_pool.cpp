// ThreadPool: see thread_pool.h. Handshake per run(): publish the job, bump
// generation_ (seq_cst), wake sleepers; every worker drains tasks and then
// decrements unfinished_workers_, and run() returns only when it reaches zero,
// so no worker can still be reading the job when the next one is published.
#include "cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLP_CPU_RELAX() _mm_pause()
#else
#define MLP_CPU_RELAX() std::this_thread::yield()
#endif

namespace mlp::cpu {
namespace {
// ~50-100 us of spinning: covers the gap between two ops of a training step,
// short enough that an idle pool goes to sleep almost at once.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this] { worker_main(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::drain() {
  for (;;) {
    const int t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= tasks_) return;
    thunk_(fn_, t);
  }
}

void ThreadPool::run_erased(int tasks, Thunk thunk, const void* fn) {
  tasks_ = tasks;
  thunk_ = thunk;
  fn_ = fn;
  next_task_.store(0, std::memory_order_relaxed);
  unfinished_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job, pairs with sleepers_ below
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);  // a worker between its check and wait holds mu_
    cv_.notify_all();
  }
  drain();
  for (int spins = 0; unfinished_workers_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations)
      MLP_CPU_RELAX();
    else
      std::this_thread::yield();  // a worker was descheduled; let it run
  }
}

void ThreadPool::worker_main() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spins = 0; gen == seen && spins < kSpinIterations; ++spins) {
      MLP_CPU_RELAX();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);  // seq_cst: run() either sees us or we see its bump
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
      gen = generation_.load();
    }
    seen = gen;
    if (stop_.load()) return;
    drain();
    unfinished_workers_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace mlp::cpu
