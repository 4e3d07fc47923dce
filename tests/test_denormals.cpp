// Subnormal floats on the CPU backend (src/cpu/denormals.h): DenormalMode sets
// and restores this thread's mode; the pool's workers hold the mode they were
// built with, whatever their creator's; the CPU backend flushes on every
// thread an op runs on (caller and workers) by default, keeps IEEE subnormals
// when asked, and leaves the caller's own mode as it found it; --denormals
// reaches the backend options; every CPU op that computes flushes on the
// caller as on the workers.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "cli/device_flags.h"
#include "cpu/denormals.h"
#include "cpu/thread_pool.h"
#include "mlp/backend.h"
#include "mlp/optimizer.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::DeviceVec;

constexpr float kSmallestNormal = 1.17549435e-38f;

// A product whose exact result is subnormal, computed now, on this thread
// (volatile: no constant folding at compile time, where the mode is not set).
float subnormal_product() {
  volatile float x = kSmallestNormal;
  volatile float half = 0.5f;
  return x * half;
}

// A subnormal operand, read now: DAZ reads it as 0, so x + 0 is 0.
float subnormal_operand_plus_zero() {
  volatile float x = kSmallestNormal * 0.25f;  // folded at compile time: a true subnormal
  volatile float zero = 0.0f;
  return x + zero;
}

#if defined(__x86_64__) || defined(__i386__)

TEST(Denormals, ModeFlushesOnThisThreadAndRestoresTheOldMode) {
  ASSERT_FALSE(cpu::denormals_flushed()) << "a test thread starts with IEEE subnormals";
  EXPECT_GT(subnormal_product(), 0.0f);
  {
    const cpu::DenormalMode flush(true);
    EXPECT_TRUE(cpu::denormals_flushed());
    EXPECT_EQ(subnormal_product(), 0.0f);            // FTZ: a subnormal result is 0
    EXPECT_EQ(subnormal_operand_plus_zero(), 0.0f);  // DAZ: a subnormal operand is 0
    {
      const cpu::DenormalMode keep(false);  // nested: keep, then back to flush
      EXPECT_GT(subnormal_product(), 0.0f);
      EXPECT_GT(subnormal_operand_plus_zero(), 0.0f);
    }
    EXPECT_EQ(subnormal_product(), 0.0f);
  }
  EXPECT_FALSE(cpu::denormals_flushed());
  EXPECT_GT(subnormal_product(), 0.0f);
}

// Every worker holds the pool's mode, also when its creator's mode is the
// other one (threads inherit MXCSR at creation), and the caller keeps its own.
TEST(Denormals, PoolWorkersHoldThePoolsModeNotTheCreators) {
  for (const bool flush : {true, false}) {
    SCOPED_TRACE(flush ? "pool flushes" : "pool keeps");
    std::unique_ptr<cpu::ThreadPool> pool;
    {
      const cpu::DenormalMode creator(!flush);
      pool = std::make_unique<cpu::ThreadPool>(3, flush);
    }
    const pthread_t caller = pthread_self();
    std::atomic<int> on_workers{0}, wrong_on_workers{0}, caller_flushed{0};
    for (int run = 0; run < 100; ++run)
      pool->run(6, [&](int) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));  // every thread gets some
        const bool flushed = cpu::denormals_flushed() && subnormal_product() == 0.0f;
        if (pthread_equal(pthread_self(), caller)) {
          if (flushed) caller_flushed.fetch_add(1);
          return;
        }
        on_workers.fetch_add(1);
        if (flushed != flush) wrong_on_workers.fetch_add(1);
      });
    EXPECT_GT(on_workers.load(), 0);
    EXPECT_EQ(wrong_on_workers.load(), 0);
    EXPECT_EQ(caller_flushed.load(), 0) << "the pool set its mode on the caller";
  }
}

// Adam on moments that are subnormal, with zero gradients (a weight that
// never gets one): flushed, m and v read as 0 (DAZ), so they come out 0 and
// the weight does not move; kept, they decay by beta1 and beta2, still
// subnormal and non-zero. n spans several of the pool's chunks, so the workers'
// parts are checked as well as the caller's, and the caller's mode is as before.
TEST(Denormals, CpuBackendFlushesOnEveryThreadByDefaultAndKeepsWhenAsked) {
  const int64_t n = 1 << 18;
  const float tiny = kSmallestNormal * 0.5f;
  EXPECT_TRUE(CpuOptions{}.flush_denormals) << "flush is the default";
  for (const bool flush : {true, false}) {
    SCOPED_TRACE(flush ? "flush (default)" : "keep");
    CpuOptions opt{2};
    if (!flush) opt.flush_denormals = false;
    auto be = make_cpu_backend(opt);
    EXPECT_NE(be->describe().find(flush ? "subnormals flushed to zero" : "subnormals kept"),
              std::string::npos)
        << be->describe();
    const std::vector<float> p0(static_cast<std::size_t>(n), 0.5f),
        zeros(static_cast<std::size_t>(n), 0.0f), moments(static_cast<std::size_t>(n), tiny);
    DeviceVec<float> p(*be, p0), g(*be, zeros), m(*be, moments), v(*be, moments);
    OptimizerState st;
    DeviceVec<OptimizerState> state(*be, std::vector<OptimizerState>{st});
    be->adam_step(p.get(), g.get(), m.get(), v.get(), n, state.get());
    EXPECT_FALSE(cpu::denormals_flushed()) << "the op left its mode on the caller";

    const auto got_m = m.download(), got_v = v.download(), got_p = p.download();
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const bool ok = flush ? got_m[k] == 0.0f && got_v[k] == 0.0f && got_p[k] == 0.5f
                            : got_m[k] > 0.0f && got_m[k] < tiny && got_v[k] > 0.0f &&
                                  got_v[k] < kSmallestNormal && std::isfinite(got_p[k]);
      if (!ok && wrong++ < 3)
        ADD_FAILURE() << "element " << i << ": m " << got_m[k] << " v " << got_v[k] << " p "
                      << got_p[k];
    }
    EXPECT_EQ(wrong, 0);
  }
}

// Every CPU op that does arithmetic flushes on the caller too, not only on the
// workers: at 1 thread the caller computes all of it, at 2 the tasks it
// claims. Each op gets subnormal inputs whose result is 0 with FTZ+DAZ and
// positive with IEEE subnormals (a select reads a subnormal act > 0 as 0 > 0
// under DAZ), so an op that forgot its DenormalMode gives a positive result
// while the backend flushes. u8_to_float (integer inputs) and softmax_xent and
// its fused backward (they subtract the row maximum first, so subnormal logits
// change nothing) cannot tell the modes apart and are left out. Caught when
// the guard is taken out of gemm, bias_forward or relu_backward (tried).
TEST(Denormals, EveryCpuOpFlushesOnTheCallerAsOnTheWorkers) {
  const float tiny = kSmallestNormal * 0.25f;
  const int64_t rows = 256, cols = 512, depth = 64;  // > 2 x 16,384 elements: both threads
  const auto filled = [](int64_t n, float x) {
    return std::vector<float>(static_cast<std::size_t>(n), x);
  };
  std::vector<CpuGemm> libs{CpuGemm::kOpenblas};
  if (onednn_compiled()) libs.push_back(CpuGemm::kOnednn);
  for (const CpuGemm lib : libs)
    for (const int threads : {1, 2})
      for (const bool flush : {true, false}) {
        SCOPED_TRACE(fmt::format("{}, {} thread(s), {}", cpu_gemm_name(lib), threads,
                                 flush ? "flush" : "keep"));
        CpuOptions opt{threads, lib};
        opt.flush_denormals = flush;
        auto be = make_cpu_backend(opt);
        // Every element 0 when flushed, positive when kept; the caller's mode untouched.
        const auto expect_mode = [&](const char* op, const std::vector<float>& got) {
          EXPECT_FALSE(cpu::denormals_flushed()) << op << " left its mode on the caller";
          int64_t wrong = 0;
          for (std::size_t i = 0; i < got.size(); ++i) {
            const bool ok = flush ? got[i] == 0.0f : got[i] > 0.0f;
            if (!ok && wrong++ < 2) ADD_FAILURE() << op << ": element " << i << " is " << got[i];
          }
          EXPECT_EQ(wrong, 0) << op;
        };
        const DeviceVec<float> tiny_in(*be, filled(rows * depth, tiny)),
            ones_w(*be, filled(depth * cols, 1.0f)), zero_bias(*be, filled(cols, 0.0f)),
            tiny_act(*be, filled(rows * cols, tiny));
        const CMat a{tiny_in.get(), rows, depth}, w{ones_w.get(), depth, cols};
        {
          DeviceVec<float> c(*be, filled(rows * cols, -1.0f));
          be->gemm(Trans::kNo, Trans::kNo, 1.0f, a, w, 0.0f, Mat{c.get(), rows, cols});
          expect_mode("gemm", c.download());
        }
        {
          DeviceVec<float> c(*be, filled(rows * cols, -1.0f));
          const Mat cm{c.get(), rows, cols};
          const std::vector<int64_t> blocks = be->gemm_row_blocks(Trans::kNo, Trans::kNo, a, w, cm);
          for (std::size_t i = 0; i + 1 < blocks.size(); ++i)
            be->gemm_rows(Trans::kNo, Trans::kNo, 1.0f, a, w, 0.0f, cm, blocks[i], blocks[i + 1]);
          expect_mode("gemm_rows", c.download());
        }
        {
          DeviceVec<float> c1(*be, filled(rows * cols, -1.0f)), c2(*be, filled(rows * cols, -1.0f));
          be->run_side_by_side(
              [&] {
                be->gemm(Trans::kNo, Trans::kNo, 1.0f, a, w, 0.0f, Mat{c1.get(), rows, cols});
              },
              [&] {
                be->gemm(Trans::kNo, Trans::kNo, 1.0f, a, w, 0.0f, Mat{c2.get(), rows, cols});
              });
          expect_mode("run_side_by_side (first)", c1.download());
          expect_mode("run_side_by_side (second)", c2.download());
        }
        {
          DeviceVec<float> out(*be, filled(rows * cols, -1.0f));
          be->gemm_bias_act(a, w, zero_bias.get(), /*relu=*/true, Mat{out.get(), rows, cols});
          expect_mode("gemm_bias_act", out.download());
        }
        {
          DeviceVec<float> z(*be, filled(rows * cols, tiny));
          be->bias_relu_forward(Mat{z.get(), rows, cols}, zero_bias.get());
          expect_mode("bias_relu_forward", z.download());
        }
        {
          DeviceVec<float> z(*be, filled(rows * cols, tiny));
          be->bias_forward(Mat{z.get(), rows, cols}, zero_bias.get());
          expect_mode("bias_forward", z.download());
        }
        {
          DeviceVec<float> grad(*be, filled(rows * cols, 1.0f));
          be->relu_backward(Mat{grad.get(), rows, cols}, CMat{tiny_act.get(), rows, cols});
          expect_mode("relu_backward", grad.download());
        }
        {
          DeviceVec<float> db(*be, filled(cols, -1.0f));
          be->bias_grad(CMat{tiny_act.get(), rows, cols}, db.get());
          expect_mode("bias_grad", db.download());
        }
        {
          DeviceVec<float> grad(*be, filled(rows * cols, 1.0f)), db(*be, filled(cols, -1.0f));
          be->relu_backward_bias_grad(Mat{grad.get(), rows, cols}, CMat{tiny_act.get(), rows, cols},
                                      db.get());
          expect_mode("relu_backward_bias_grad (grad)", grad.download());
          expect_mode("relu_backward_bias_grad (db)", db.download());
        }
        {
          // Zero gradients, subnormal moments: flushed, the moments read as 0
          // and stay 0; kept, they decay and stay positive.
          const int64_t n = rows * cols;
          DeviceVec<float> p(*be, filled(n, 0.5f)), g(*be, filled(n, 0.0f)),
              m(*be, filled(n, tiny)), v(*be, filled(n, tiny));
          OptimizerState st;
          st.step = 1;
          const DeviceVec<OptimizerState> state(*be, std::vector<OptimizerState>{st});
          be->adam_update(p.get(), g.get(), m.get(), v.get(), n, state.get());
          expect_mode("adam_update (m)", m.download());
          expect_mode("adam_update (v)", v.download());
        }
      }
}

#else

TEST(Denormals, NotSettableOffX86) {
  EXPECT_FALSE(cpu::can_flush_denormals());
  EXPECT_GT(subnormal_product(), 0.0f);
  (void)subnormal_operand_plus_zero;
}

#endif

TEST(Denormals, FlagReachesTheBackendOptions) {
  cli::DeviceFlags f;
  EXPECT_EQ(f.denormals, "flush");
  EXPECT_TRUE(cli::backend_options(f).cpu.flush_denormals);
  f.denormals = "keep";
  EXPECT_FALSE(cli::backend_options(f).cpu.flush_denormals);
}

}  // namespace
}  // namespace mlp
