// ThreadPool: see thread_pool.h. Handshake per run(): publish the job (thunk,
// fn, done_ = 0) then job_ with a new generation (seq_cst), set wake_ and wake
// sleepers. Whoever claims a task index from job_ runs it and counts it in
// done_; run() returns when done_ reaches the task count. A claim is a
// fetch_add on job_, so it always names the job it belongs to, and that job's
// thunk/fn cannot be replaced before the claimed task is counted.
#include "cpu/thread_pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <csignal>

#include "cpu/denormals.h"
#include "cpu/scoped_flag.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLP_CPU_RELAX() _mm_pause()
#else
#define MLP_CPU_RELAX() std::this_thread::yield()
#endif

namespace mlp::cpu {
namespace {

// Covers the gap between two ops of a training step (a few microseconds), short
// enough that a pool beside a busy neighbour soon sleeps instead of burning the
// core a descheduled peer needs.
constexpr auto kSpin = std::chrono::microseconds(50);
// Back-off rule (thread_pool.h): judge a window after this many parallel runs,
// or at once when it lost more than kStallLoss against the serial estimate.
constexpr int kJudgeRuns = 16;
constexpr int kFreshWindowRuns = 256;
constexpr auto kStallLoss = std::chrono::milliseconds(2);
constexpr auto kMinBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  // Returns at once when *word != expected; spurious wake-ups are re-checked by callers.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

// Spins until pred() or kSpin has passed; returns pred().
template <class Pred>
bool spin_until(const Pred& pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      MLP_CPU_RELAX();
    }
    if (std::chrono::steady_clock::now() >= deadline) return pred();
  }
}

// True on this thread while it runs a task (ScopedFlag marks it).
thread_local bool t_inside_task = false;

constexpr uint32_t generation_of(uint64_t job) { return static_cast<uint32_t>(job >> 32); }
constexpr int tasks_of(uint64_t job) { return static_cast<int>((job >> 16) & 0xffff); }
constexpr int index_of(uint64_t job) { return static_cast<int>(job & 0xffff); }

}  // namespace

bool ThreadPool::inside_task() { return t_inside_task; }

ThreadPool::ThreadPool(int threads, bool flush_denormals) {
  // Workers start with every signal blocked (the mask is inherited), so
  // SIGINT/SIGTERM always reach a thread that handles them, never a pool thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  const int workers = std::min(std::max(1, threads), 1024) - 1;
  for (int i = 0; i < workers; ++i)
    workers_.emplace_back([this, flush_denormals] {
      set_denormal_flush(flush_denormals);  // set, not inherited: the creator's mode may differ
      worker_main();
    });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  wake_.fetch_add(1);
  futex_wake_all(&wake_);
  for (auto& w : workers_) w.join();
}

bool ThreadPool::run_one_claimed(uint32_t* generation) {
  const uint64_t job = job_.fetch_add(1, std::memory_order_acq_rel);
  *generation = generation_of(job);
  const int tasks = tasks_of(job);
  if (index_of(job) >= tasks) return false;
  {
    const ScopedFlag mark(t_inside_task);
    thunk_(fn_, index_of(job));
  }
  const uint32_t done = done_.fetch_add(1) + 1;  // seq_cst: pairs with caller_waiting_
  if (done == static_cast<uint32_t>(tasks) && caller_waiting_.load() != 0) futex_wake_all(&done_);
  return true;
}

void ThreadPool::run_erased(int tasks, Thunk thunk, const void* fn) {
  const Clock::time_point t0 = Clock::now();
  if (t0 < serial_until_) {  // backing off: the caller alone, same tasks
    const ScopedFlag mark(t_inside_task);
    for (int t = 0; t < tasks; ++t) thunk(fn, t);
    ++serial_runs_;
    return;
  }
  thunk_ = thunk;
  fn_ = fn;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = generation_of(job_.load(std::memory_order_relaxed)) + 1;
  job_.store(uint64_t{gen} << 32 | static_cast<uint64_t>(tasks) << 16);  // seq_cst: publishes
  wake_.store(gen);
  if (sleepers_.load() > 0) futex_wake_all(&wake_);

  // The caller works too, timing its own tasks for the serial estimate.
  int mine = 0;
  Clock::duration mine_took{};
  uint32_t seen = 0;
  for (;;) {
    const Clock::time_point s = Clock::now();
    if (!run_one_claimed(&seen)) break;
    mine_took += Clock::now() - s;
    ++mine;
  }
  wait_for_done(tasks);
  ++parallel_runs_;
  if (mine > 0) judge(Clock::now() - t0, mine_took * tasks / mine);
}

void ThreadPool::wait_for_done(int tasks) {
  const auto all = static_cast<uint32_t>(tasks);
  if (spin_until([&] { return done_.load(std::memory_order_acquire) == all; })) return;
  caller_waiting_.store(1);  // seq_cst: a worker finishing the last task sees it, or we see done_
  for (uint32_t d = done_.load(); d != all; d = done_.load()) futex_wait(&done_, d);
  caller_waiting_.store(0);
}

void ThreadPool::judge(Clock::duration took, Clock::duration serial_estimate) {
  window_took_ += took;
  window_serial_ += serial_estimate;
  ++window_runs_;
  const bool stalled = window_took_ - window_serial_ > kStallLoss;
  // Parallel must be clearly faster (took <= 0.9 x serial) to keep going.
  const bool not_paying = window_runs_ >= kJudgeRuns && window_took_ * 10 > window_serial_ * 9;
  if (stalled || not_paying) {
    serial_until_ = Clock::now() + backoff_;
    backoff_ = std::min<Clock::duration>(backoff_ * 2, kMaxBackoff);
  } else if (window_runs_ >= kFreshWindowRuns) {
    backoff_ = kMinBackoff;  // a good window: the next back-off starts short again
  } else {
    return;
  }
  window_runs_ = 0;
  window_took_ = window_serial_ = Clock::duration{};
}

void ThreadPool::worker_main() {
  uint32_t seen = 0;
  const auto news = [&] {
    return generation_of(job_.load(std::memory_order_acquire)) != seen || stop_.load();
  };
  for (;;) {
    if (!spin_until(news)) {
      sleepers_.fetch_add(1);  // seq_cst: run() either sees us or we see its wake_ store
      for (uint32_t w = wake_.load(); !news(); w = wake_.load()) futex_wait(&wake_, w);
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    while (run_one_claimed(&seen)) {
    }
  }
}

}  // namespace mlp::cpu
