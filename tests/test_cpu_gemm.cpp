// Both CPU GEMM routes (oneDNN where built, OpenBLAS) through cpu::gemm against
// a plain double-precision loop, on odd shapes and the step's own MNIST shapes
// in every transpose the step uses, and bit-for-bit the same result for 1, 2
// and 3 pool threads (the pool splits c; no element's sum may depend on that).
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"
#include "mlp/backend.h"
#include "mlp/error.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::random_floats;

struct Case {
  bool ta, tb;
  int64_t m, n, k;
};

// Odd shapes, and the step at batch 100: forward X*W (NN), dW = A^T*dY (TN),
// dX = dY*W^T (NT), for the 784- and 500-wide layers and the 10-class head.
const Case kCases[] = {
    {false, false, 7, 5, 13},     {true, false, 13, 7, 5},       {false, true, 3, 17, 9},
    {true, true, 17, 3, 11},      {false, false, 1, 1, 1},       {false, false, 100, 301, 70},
    {true, false, 301, 100, 70},  {false, false, 100, 500, 784}, {false, false, 100, 500, 500},
    {false, false, 100, 10, 500}, {true, false, 784, 500, 100},  {true, false, 500, 500, 100},
    {true, false, 500, 10, 100},  {false, true, 100, 500, 500},  {false, true, 100, 500, 10},
};

std::vector<CpuGemm> routes() {
  std::vector<CpuGemm> r{CpuGemm::kOpenblas};
  if (onednn_compiled()) r.push_back(CpuGemm::kOnednn);
  return r;
}

std::vector<float> run_gemm(CpuGemm lib, int threads, const Case& c, float alpha, float beta,
                            const std::vector<float>& a, const std::vector<float>& b,
                            const std::vector<float>& c0) {
  cpu::ThreadPool pool(threads);
  std::vector<float> out = c0;
  const CMat am = c.ta ? CMat{a.data(), c.k, c.m} : CMat{a.data(), c.m, c.k};
  const CMat bm = c.tb ? CMat{b.data(), c.n, c.k} : CMat{b.data(), c.k, c.n};
  cpu::gemm(pool, lib, c.ta ? Trans::kYes : Trans::kNo, c.tb ? Trans::kYes : Trans::kNo, alpha, am,
            bm, beta, Mat{out.data(), c.m, c.n});
  return out;
}

TEST(CpuGemm, EveryRouteMatchesThePlainLoopAndIgnoresTheThreadCount) {
  uint64_t seed = 100;
  for (const CpuGemm lib : routes())
    for (const Case& c : kCases)
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.7f, 0.3f}}) {
        const auto a = random_floats(static_cast<std::size_t>(c.m * c.k), ++seed);
        const auto b = random_floats(static_cast<std::size_t>(c.k * c.n), ++seed);
        const auto c0 = random_floats(static_cast<std::size_t>(c.m * c.n), ++seed);
        const std::string what = std::string(cpu_gemm_name(lib)) + (c.ta ? " T" : " N") +
                                 (c.tb ? "T " : "N ") + std::to_string(c.m) + "x" +
                                 std::to_string(c.n) + "x" + std::to_string(c.k);
        const std::vector<float> one = run_gemm(lib, 1, c, alpha, beta, a, b, c0);
        for (int64_t i = 0; i < c.m; ++i)
          for (int64_t j = 0; j < c.n; ++j) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < c.k; ++p) {
              const double x = c.ta ? a[p * c.m + i] : a[i * c.k + p];
              const double y = c.tb ? b[j * c.k + p] : b[p * c.n + j];
              s += x * y;
              mag += std::abs(x * y);
            }
            const double want = alpha * s + beta * double{c0[i * c.n + j]};
            const double tol = 1e-6 + 4e-7 * static_cast<double>(c.k) * (mag + 1.0);
            const double got = one[i * c.n + j];
            ASSERT_TRUE(std::abs(got - want) <= tol)
                << what << " at (" << i << ", " << j << "): " << got << " vs " << want;
          }
        for (int threads : {2, 3}) {
          const std::vector<float> many = run_gemm(lib, threads, c, alpha, beta, a, b, c0);
          ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
              << what << ": " << threads << " threads differ from 1";
        }
      }
}

// WholeGemms: while one is alive on a thread, gemm() there is one library
// call on that thread (the pool is not asked), with the same result as split;
// when it ends, splitting comes back.
TEST(CpuGemm, WholeGemmsRunOnTheCallingThreadWithTheSameResult) {
  const Case c{false, false, 100, 500, 784};  // the forward GEMM of layer 0: split in blocks
  const auto a = random_floats(static_cast<std::size_t>(c.m * c.k), 41);
  const auto b = random_floats(static_cast<std::size_t>(c.k * c.n), 42);
  for (const CpuGemm lib : routes()) {
    cpu::ThreadPool pool(2);
    const auto gemm_into = [&](std::vector<float>& out) {
      cpu::gemm(pool, lib, Trans::kNo, Trans::kNo, 1.0f, CMat{a.data(), c.m, c.k},
                CMat{b.data(), c.k, c.n}, 0.0f, Mat{out.data(), c.m, c.n});
    };
    std::vector<float> split(static_cast<std::size_t>(c.m * c.n)), whole(split.size());
    gemm_into(split);
    const int64_t runs_split = pool.parallel_runs() + pool.serial_runs();
    EXPECT_GT(runs_split, 0) << cpu_gemm_name(lib) << ": this shape should be split";
    {
      const cpu::WholeGemms scope;
      gemm_into(whole);
    }
    EXPECT_EQ(runs_split, pool.parallel_runs() + pool.serial_runs()) << cpu_gemm_name(lib);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      const float tol = 1e-4f * (1.0f + std::abs(split[i]));
      ASSERT_TRUE(std::abs(whole[i] - split[i]) <= tol) << cpu_gemm_name(lib) << " at " << i;
    }
    gemm_into(split);
    EXPECT_GT(pool.parallel_runs() + pool.serial_runs(), runs_split) << cpu_gemm_name(lib);
  }
}

TEST(CpuGemm, NamesParseAndResolve) {
  EXPECT_EQ(CpuGemm::kOpenblas, parse_cpu_gemm("openblas"));
  EXPECT_EQ(CpuGemm::kDefault, parse_cpu_gemm("default"));
  EXPECT_STREQ("openblas", cpu_gemm_name(CpuGemm::kOpenblas));
  if (onednn_compiled()) {
    EXPECT_EQ(CpuGemm::kOnednn, parse_cpu_gemm("onednn"));
    EXPECT_EQ(CpuGemm::kOnednn, resolve_cpu_gemm(CpuGemm::kDefault));
    EXPECT_FALSE(cpu::onednn_version().empty());
  } else {
    EXPECT_TRUE(testing::throws_error([] { parse_cpu_gemm("onednn"); }, ExitCode::kUsage,
                                      {"without oneDNN"}));
    EXPECT_EQ(CpuGemm::kOpenblas, resolve_cpu_gemm(CpuGemm::kDefault));
  }
  EXPECT_TRUE(testing::throws_error([] { parse_cpu_gemm("blis"); }, ExitCode::kUsage, {"blis"}));
}

TEST(CpuGemm, BackendNamesItsRoute) {
  for (const CpuGemm lib : routes()) {
    const auto be = make_cpu_backend(CpuOptions{1, lib});
    const std::string d = be->describe();
    EXPECT_NE(d.find(lib == CpuGemm::kOnednn ? "oneDNN" : "OpenBLAS sgemm"), std::string::npos)
        << d;
  }
}

// oneDNN 2.6's JIT sgemm kernels point rsp into a heap workspace (oneDNN issue
// #4845, fixed in 3.x): a signal delivered to a thread inside one writes its
// frame over the heap, and a later free aborts ("corrupted size vs. prev_size";
// seen as a flaky Faults.SigintSaves... before the fix). cpu::gemm keeps signals
// blocked on the calling thread while oneDNN runs. Here a second thread keeps
// signalling the one running GEMMs; without the fix this aborted in 1 of 3 runs
// of 1.5 s ("double free or corruption").
std::atomic<int64_t> g_signals_seen{0};
void count_signal(int) { g_signals_seen.fetch_add(1); }

TEST(CpuGemm, SignalsDuringAGemmNeverCorruptTheHeap) {
  struct sigaction sa {
  }, old{};
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(0, sigaction(SIGUSR1, &sa, &old));
  const pthread_t target = pthread_self();
  std::atomic<bool> done{false};
  std::thread pest([&] {
    while (!done.load()) {
      pthread_kill(target, SIGUSR1);
      std::this_thread::yield();
    }
  });
  // The shapes of a small training step (batch 10, 128 hidden), where it was seen.
  const Case cases[] = {{false, false, 10, 128, 784},
                        {true, false, 784, 128, 10},
                        {false, true, 10, 784, 128},
                        {false, false, 10, 10, 128}};
  const auto a = random_floats(784 * 128, 1), b = random_floats(784 * 128, 2);
  const std::vector<float> c0(784 * 128, 0.0f);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  int64_t gemms = 0;
  while (std::chrono::steady_clock::now() < until) {
    for (const CpuGemm lib : routes())
      for (const Case& c : cases) {
        const std::vector<float> out = run_gemm(lib, 1, c, 1.0f, 0.0f, a, b, c0);
        ASSERT_TRUE(std::isfinite(out[0]));
        ++gemms;
      }
    std::vector<std::vector<char>> churn(64);  // malloc/free notice a corrupted heap
    for (auto& v : churn) v.resize(4096 + static_cast<std::size_t>(gemms % 7) * 512);
  }
  done.store(true);
  pest.join();
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_GT(gemms, 10);
  EXPECT_GT(g_signals_seen.load(), 0) << "the signals must reach the thread between GEMMs";
}

}  // namespace
}  // namespace mlp
