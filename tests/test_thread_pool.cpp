// ThreadPool: every task runs exactly once per run() over many back-to-back
// runs (the claim/complete handshake), a run() from inside a task runs inline,
// the split parallel_for makes does not depend on who runs it, worker threads block signals, and
// physical core counting from a fake /sys topology (two hyperthreads per core).
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <thread>
#include <vector>

#include "cpu/cpu_topology.h"
#include "cpu/thread_pool.h"
#include "testing.h"

namespace mlp {
namespace {

TEST(ThreadPool, EveryTaskRunsOnceInEveryRun) {
  for (int threads : {1, 2, 3, 5}) {
    cpu::ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(64);
    for (int run = 0; run < 3000; ++run) {
      const int tasks = 1 + run % 40;
      pool.run(tasks, [&](int t) { hits[t].fetch_add(1); });
      for (int t = 0; t < 64; ++t) {
        const int want = t < tasks ? 1 : 0;
        ASSERT_EQ(want, hits[t].exchange(0)) << threads << " threads, run " << run << " task " << t;
      }
      if (run % 500 == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // workers block
    }
    // Runs of one task, and every run of a 1-thread pool, go inline and are not counted.
    EXPECT_EQ(threads == 1 ? 0 : 3000 - 3000 / 40, pool.parallel_runs() + pool.serial_runs());
  }
}

// A run() from inside a task (CpuBackend::run_side_by_side's work calling
// ops that split) runs inline on that task's thread: every inner task once,
// none of them on another thread, and the pool is usable again afterwards.
TEST(ThreadPool, RunFromInsideATaskRunsInlineOnThatThread) {
  for (int threads : {1, 2, 3}) {
    cpu::ThreadPool pool(threads);
    EXPECT_FALSE(cpu::ThreadPool::inside_task());
    std::atomic<int> inner_hits{0}, foreign{0}, not_marked{0};
    for (int run = 0; run < 200; ++run)
      pool.run(2, [&](int) {
        if (threads > 1 && !cpu::ThreadPool::inside_task()) not_marked.fetch_add(1);
        const std::thread::id outer = std::this_thread::get_id();
        pool.run(5, [&](int) {
          inner_hits.fetch_add(1);
          if (std::this_thread::get_id() != outer) foreign.fetch_add(1);
        });
      });
    EXPECT_EQ(200 * 2 * 5, inner_hits.load()) << threads << " threads";
    EXPECT_EQ(0, foreign.load()) << threads << " threads";
    EXPECT_EQ(0, not_marked.load()) << threads << " threads";
    EXPECT_FALSE(cpu::ThreadPool::inside_task());
    std::atomic<int> after{0};
    pool.run(7, [&](int) { after.fetch_add(1); });
    EXPECT_EQ(7, after.load());
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeInAlignedDisjointChunks) {
  cpu::ThreadPool pool(3);
  for (int64_t n : {1, 15, 16, 17, 1000, 100003}) {
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
    std::atomic<int> misaligned{0};
    pool.parallel_for(n, 10, 16, [&](int64_t b, int64_t e) {
      if (b % 16 != 0) misaligned.fetch_add(1);
      for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
    });
    EXPECT_EQ(0, misaligned.load()) << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(1, seen[i].load()) << "n " << n << " i " << i;
  }
}

TEST(ThreadPool, WorkersBlockEverySignal) {
  cpu::ThreadPool pool(4);
  std::atomic<int> unblocked_on_workers{0}, tasks_on_workers{0};
  const pthread_t caller = pthread_self();
  for (int run = 0; run < 200; ++run)
    pool.run(8, [&](int) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // every thread gets some
      if (pthread_equal(pthread_self(), caller)) return;
      sigset_t mask;
      pthread_sigmask(SIG_BLOCK, nullptr, &mask);
      tasks_on_workers.fetch_add(1);
      if (!sigismember(&mask, SIGINT) || !sigismember(&mask, SIGTERM))
        unblocked_on_workers.fetch_add(1);
    });
  EXPECT_GT(tasks_on_workers.load(), 0);
  EXPECT_EQ(0, unblocked_on_workers.load());
  // ...and the caller's own mask is left as it was.
  sigset_t mine;
  pthread_sigmask(SIG_BLOCK, nullptr, &mine);
  EXPECT_FALSE(sigismember(&mine, SIGINT));
}

TEST(CpuTopology, CountsCoresNotHyperthreads) {
  testing::TempDir dir;
  // cpu0/cpu1 share core 0, cpu2/cpu3 share core 1 of package 0; cpu4 is core 0 of package 1.
  const int package[] = {0, 0, 0, 0, 1}, core[] = {0, 0, 1, 1, 0};
  for (int c = 0; c < 5; ++c) {
    const std::string topo = dir.file("cpu" + std::to_string(c) + "/topology");
    std::filesystem::create_directories(topo);
    testing::write_text(topo + "/physical_package_id", std::to_string(package[c]) + "\n");
    testing::write_text(topo + "/core_id", std::to_string(core[c]) + "\n");
  }
  EXPECT_EQ(3, cpu::count_physical_cores({0, 1, 2, 3, 4}, dir.path()));
  EXPECT_EQ(1, cpu::count_physical_cores({0, 1}, dir.path()));
  EXPECT_EQ(2, cpu::count_physical_cores({1, 2}, dir.path()));
  EXPECT_EQ(3, cpu::count_physical_cores({0, 1, 7, 8}, dir.path()));  // 7, 8: no topology
  EXPECT_GE(cpu::physical_cores(), 1);
}

}  // namespace
}  // namespace mlp
