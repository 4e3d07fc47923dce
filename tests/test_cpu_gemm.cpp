// Both CPU GEMM routes (oneDNN where built, OpenBLAS) through cpu::gemm against
// a plain double-precision loop, on odd shapes and the step's own MNIST shapes
// in every transpose the step uses, and bit-for-bit the same result for 1, 2
// and 3 pool threads (the pool splits c; no element's sum may depend on that),
// and for the row blocks computed one by one (Backend::gemm_rows).
#include <fmt/format.h>
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

// Backend::gemm_row_blocks / gemm_rows: the blocks of rows gemm() splits c
// into, each computable alone, in any order, with exactly gemm()'s bits (the
// step plan's pieces of layer 0's dW); a range that is not a block is refused.
TEST(CpuGemm, RowBlocksGiveTheBitsOfTheWholeGemm) {
  const Case cases[] = {
      {true, false, 784, 500, 100},  // layer 0's dW at batch 100: 16 blocks
      {true, false, 301, 100, 70},   // odd rows: blocks of at least 48, 8-aligned
      {false, false, 50, 500, 784},  // fewer than 96 rows: gemm() splits columns
  };
  for (const CpuGemm lib : routes())
    for (int threads : {1, 2}) {
      const auto be = make_cpu_backend(CpuOptions{threads, lib});
      for (const Case& c : cases) {
        const std::size_t na = static_cast<std::size_t>(c.m * c.k);
        const std::size_t nb = static_cast<std::size_t>(c.k * c.n);
        const std::size_t nc = static_cast<std::size_t>(c.m * c.n);
        Buffer a = be->alloc(na * sizeof(float)), b = be->alloc(nb * sizeof(float));
        Buffer whole = be->alloc(nc * sizeof(float)), pieces = be->alloc(nc * sizeof(float));
        be->upload(a.data(), random_floats(na, 51).data(), na * sizeof(float));
        be->upload(b.data(), random_floats(nb, 52).data(), nb * sizeof(float));
        const CMat am = c.ta ? CMat{a.as<float>(), c.k, c.m} : CMat{a.as<float>(), c.m, c.k};
        const CMat bm = c.tb ? CMat{b.as<float>(), c.n, c.k} : CMat{b.as<float>(), c.k, c.n};
        const Trans ta = c.ta ? Trans::kYes : Trans::kNo, tb = c.tb ? Trans::kYes : Trans::kNo;
        const Mat wm{whole.as<float>(), c.m, c.n}, pm{pieces.as<float>(), c.m, c.n};
        const std::string what =
            fmt::format("{} {} threads {}x{}", cpu_gemm_name(lib), threads, c.m, c.n);
        be->gemm(ta, tb, 1.0f, am, bm, 0.0f, wm);
        const std::vector<int64_t> rows = be->gemm_row_blocks(ta, tb, am, bm, wm);
        if (c.m == 784) {
          EXPECT_EQ(rows.size(), 17u) << what;
        }
        if (c.m == 50) {
          EXPECT_EQ(rows, (std::vector<int64_t>{0, 50})) << what;
        }
        for (std::size_t i = rows.size() - 1; i-- > 0;)  // last block first: order is free
          be->gemm_rows(ta, tb, 1.0f, am, bm, 0.0f, pm, rows[i], rows[i + 1]);
        std::vector<float> w(nc), p(nc);
        be->download(w.data(), whole.data(), nc * sizeof(float));
        be->download(p.data(), pieces.data(), nc * sizeof(float));
        EXPECT_EQ(0, std::memcmp(w.data(), p.data(), nc * sizeof(float))) << what;
        if (rows.size() > 2) {
          EXPECT_TRUE(testing::throws_error(
              [&] { be->gemm_rows(ta, tb, 1.0f, am, bm, 0.0f, pm, rows[0], rows[2] - 1); },
              ExitCode::kFailure, {"not a block"}))
              << what;
        }
        EXPECT_TRUE(testing::throws_error(
            [&] { be->gemm_rows(ta, tb, 1.0f, am, bm, 0.0f, pm, 0, c.m + 1); }, ExitCode::kFailure,
            {"outside"}))
            << what;
      }
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
