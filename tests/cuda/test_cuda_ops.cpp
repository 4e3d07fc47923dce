// Every Backend op on the CUDA backend against the CPU backend (the reference),
// one test body running the same op on both through the public Backend API,
// on odd shapes that exercise partial blocks and warps (7x13, 10x5x3, 1x1,
// 333x777) and on the network's MNIST shapes. Tolerances follow
// cuda_testing.h's one formula.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <functional>
#include <tuple>

#include "cuda_testing.h"
#include "mlp/model.h"

namespace mlp {
namespace {

using cuda_testing::all_close;
using cuda_testing::CudaTest;
using cuda_testing::kUnitRoundoff;
using testing::DeviceVec;
using testing::random_floats;

template <class T>
std::vector<T> on(Backend& be, const std::vector<T>& host, const std::function<void(T*)>& op) {
  DeviceVec<T> d(be, host);
  op(d.get());
  return d.download();
}

struct Shape {
  int64_t rows, cols;
};
// Odd shapes first (partial blocks, partial warps, a single element, several
// blocks), then the network's activation shapes at batch 100.
const std::vector<Shape> kShapes = {{7, 13},    {10, 5},    {1, 1},    {333, 777},
                                    {100, 784}, {100, 500}, {100, 10}, {1000, 10}};

std::vector<uint8_t> random_bytes(std::size_t n, uint64_t seed, uint32_t bound = 256) {
  Pcg32 rng(seed, 5);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng.below(bound));
  return v;
}

std::string shape_name(const Shape& s) {
  return std::to_string(s.rows) + "x" + std::to_string(s.cols);
}

// ---- GEMM ---------------------------------------------------------------------------------
// Tolerance: both results obey the classic bound |fl(x.y) - x.y| <= k*u*sum|x_i*y_i|
// (k = inner dimension), so they differ by at most twice that, per element:
// atol_ij = 2 * k * u * (|alpha| (|op(A)| |op(B)|)_ij + |beta c_ij|) (+ a few u for
// the final alpha/beta scaling), rtol = 0.
struct GemmCase {
  int64_t m, k, n;
};
class CudaGemm : public CudaTest,
                 public ::testing::WithParamInterface<std::tuple<GemmCase, int, int>> {};

TEST_P(CudaGemm, MatchesCpuWithinRoundingBound) {
  const auto [g, ta_i, tb_i] = GetParam();
  const Trans ta = ta_i ? Trans::kYes : Trans::kNo, tb = tb_i ? Trans::kYes : Trans::kNo;
  // Stored shapes: a is (m, k) or its transpose (k, m); b likewise.
  const int64_t ar = ta == Trans::kNo ? g.m : g.k, ac = ta == Trans::kNo ? g.k : g.m;
  const int64_t br = tb == Trans::kNo ? g.k : g.n, bc = tb == Trans::kNo ? g.n : g.k;
  for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.5f, 2.0f}}) {
    auto a = random_floats(static_cast<std::size_t>(ar * ac), 1);
    auto b = random_floats(static_cast<std::size_t>(br * bc), 2);
    auto c = random_floats(static_cast<std::size_t>(g.m * g.n), 3);
    // out = alpha op(a) op(b) + beta c on backend `be`, from host inputs.
    const auto run = [&](Backend& be, const std::vector<float>& ha, const std::vector<float>& hb,
                         float al, float be_, const std::vector<float>& hc) {
      DeviceVec<float> da(be, ha), db(be, hb), dc(be, hc);
      be.gemm(ta, tb, al, {da.get(), ar, ac}, {db.get(), br, bc}, be_, {dc.get(), g.m, g.n});
      return dc.download();
    };
    const std::vector<float> want = run(cpu(), a, b, alpha, beta, c);
    // |op(A)| |op(B)| for the bound, computed with the same CPU GEMM on |values|.
    std::vector<float> aa(a), ab(b);
    for (auto& x : aa) x = std::abs(x);
    for (auto& x : ab) x = std::abs(x);
    const std::vector<float> bound = run(cpu(), aa, ab, 1.0f, 0.0f, c);
    std::vector<double> atol(c.size());
    for (std::size_t i = 0; i < c.size(); ++i)
      atol[i] = 2.0 * static_cast<double>(g.k + 2) * kUnitRoundoff *
                (std::abs(alpha) * bound[i] + std::abs(beta * c[i]));
    EXPECT_TRUE(all_close(run(gpu(), a, b, alpha, beta, c), want, atol, 0.0))
        << "m,k,n = " << g.m << "," << g.k << "," << g.n << " alpha " << alpha << " beta " << beta;
  }
}

// e.g. "m100k784n500_NT": shapes and whether a / b are transposed.
std::string gemm_case_name(const ::testing::TestParamInfo<CudaGemm::ParamType>& p) {
  const GemmCase& g = std::get<0>(p.param);
  return "m" + std::to_string(g.m) + "k" + std::to_string(g.k) + "n" + std::to_string(g.n) +
         (std::get<1>(p.param) ? "_T" : "_N") + (std::get<2>(p.param) ? "T" : "N");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGemm,
    ::testing::Combine(::testing::Values(GemmCase{7, 13, 5}, GemmCase{10, 5, 3}, GemmCase{1, 1, 1},
                                         GemmCase{100, 784, 500}, GemmCase{100, 500, 500},
                                         GemmCase{100, 500, 10}, GemmCase{784, 100, 500}),
                       ::testing::Values(0, 1), ::testing::Values(0, 1)),
    gemm_case_name);

// ---- element-wise ops: one IEEE operation per element on both sides, so exact -----------------

TEST_F(CudaTest, U8ToFloatIsExact) {
  for (const Shape& s : kShapes)
    for (bool binarize : {false, true}) {
      const auto in = random_bytes(static_cast<std::size_t>(s.rows * s.cols), 7);
      const auto run = [&](Backend& be) {
        DeviceVec<uint8_t> din(be, in);
        return on<float>(be, std::vector<float>(in.size(), -1.0f), [&](float* out) {
          be.u8_to_float(din.get(), {out, s.rows, s.cols}, binarize);
        });
      };
      EXPECT_TRUE(all_close(run(gpu()), run(cpu()), 0.0, 0.0))
          << shape_name(s) << (binarize ? " binarized" : "");
    }
}

TEST_F(CudaTest, BiasReluForwardIsExact) {
  for (const Shape& s : kShapes) {
    const auto z = random_floats(static_cast<std::size_t>(s.rows * s.cols), 11);
    const auto bias = random_floats(static_cast<std::size_t>(s.cols), 12);
    const auto run = [&](Backend& be) {
      DeviceVec<float> dbias(be, bias);
      return on<float>(be, z, [&](float* p) {
        be.bias_relu_forward({p, s.rows, s.cols}, dbias.get());
      });
    };
    EXPECT_TRUE(all_close(run(gpu()), run(cpu()), 0.0, 0.0)) << shape_name(s);
  }
}

TEST_F(CudaTest, BiasForwardIsExact) {
  for (const Shape& s : kShapes) {
    const auto z = random_floats(static_cast<std::size_t>(s.rows * s.cols), 13);
    const auto bias = random_floats(static_cast<std::size_t>(s.cols), 14);
    const auto run = [&](Backend& be) {
      DeviceVec<float> dbias(be, bias);
      return on<float>(be, z, [&](float* p) { be.bias_forward({p, s.rows, s.cols}, dbias.get()); });
    };
    EXPECT_TRUE(all_close(run(gpu()), run(cpu()), 0.0, 0.0)) << shape_name(s);
  }
}

TEST_F(CudaTest, ReluBackwardIsExact) {
  for (const Shape& s : kShapes) {
    const auto grad = random_floats(static_cast<std::size_t>(s.rows * s.cols), 15);
    auto act = random_floats(grad.size(), 16);
    for (auto& a : act) a = a > 0.0f ? a : 0.0f;  // a ReLU output: about half exact zeros
    const auto run = [&](Backend& be) {
      DeviceVec<float> da(be, act);
      return on<float>(be, grad, [&](float* g) {
        be.relu_backward({g, s.rows, s.cols}, {da.get(), s.rows, s.cols});
      });
    };
    EXPECT_TRUE(all_close(run(gpu()), run(cpu()), 0.0, 0.0)) << shape_name(s);
  }
}

// ---- bias gradient: a column sum in a different order ------------------------------------------
// atol_c = 2 * rows * u * sum_r |grad_rc|, rtol = 0 (the rounding bound of both sums).
TEST_F(CudaTest, BiasGradMatchesCpuWithinRoundingBound) {
  for (const Shape& s : kShapes) {
    const auto grad = random_floats(static_cast<std::size_t>(s.rows * s.cols), 17);
    const auto run = [&](Backend& be) {
      DeviceVec<float> dg(be, grad);
      return on<float>(be, std::vector<float>(static_cast<std::size_t>(s.cols), 123.0f),
                       [&](float* db) {
                         be.bias_grad({dg.get(), s.rows, s.cols}, db);
                       });
    };
    std::vector<double> atol(static_cast<std::size_t>(s.cols), 0.0);
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c)
        atol[c] +=
            2.0 * static_cast<double>(s.rows) * kUnitRoundoff * std::abs(grad[r * s.cols + c]);
    EXPECT_TRUE(all_close(run(gpu()), run(cpu()), atol, 0.0)) << shape_name(s);
  }
}

// ---- softmax cross-entropy ------------------------------------------------------------------
// dlogits: atol = 1e-6 / rows, rtol = 1e-5 (softmax values carry a few ulp from
// expf and the differently ordered exp sum; /rows scales them). Loss sum:
// atol = 1e-5 * rows, rtol = 1e-5. Correct count: exact, since both sides see
// identical logits and take the FIRST maximum.
struct XentCase {
  int64_t rows, cols;
  double scale;  // logit scale: 50 checks the max subtraction
  bool ties;     // integer logits in a small range, so rows have tied maxima
};

void check_softmax_xent(Backend& gpu, Backend& cpu, const XentCase& xc, bool with_dlogits) {
  const auto n = static_cast<std::size_t>(xc.rows * xc.cols);
  auto logits = random_floats(n, 21, xc.scale);
  if (xc.ties)
    for (auto& x : logits) x = std::round(x);  // values in {-3..3}: many tied maxima
  const auto labels =
      random_bytes(static_cast<std::size_t>(xc.rows), 22, static_cast<uint32_t>(xc.cols));
  // Returns dlogits and the metrics; metrics start non-zero: the op must ADD.
  const auto run = [&](Backend& be) {
    DeviceVec<float> dl(be, logits), dd(be, std::vector<float>(n, 7.0f));
    DeviceVec<uint8_t> dlab(be, labels);
    DeviceVec<double> dm(be, {1.5, 2.0});
    be.softmax_xent({dl.get(), xc.rows, xc.cols}, dlab.get(), with_dlogits ? dd.get() : nullptr,
                    dm.get());
    return std::pair{dd.download(), dm.download()};
  };
  const auto [want_d, want_m] = run(cpu);
  const auto [got_d, m] = run(gpu);
  const std::string what = std::to_string(xc.rows) + "x" + std::to_string(xc.cols) + " scale " +
                           std::to_string(xc.scale) + (xc.ties ? " ties" : "");
  EXPECT_TRUE(testing::near(m[kMetricLossSum], want_m[kMetricLossSum],
                            1e-5 * static_cast<double>(xc.rows), 1e-5))
      << what;
  EXPECT_EQ(m[kMetricCorrect], want_m[kMetricCorrect]) << what;
  if (with_dlogits)
    EXPECT_TRUE(all_close(got_d, want_d, 1e-6 / static_cast<double>(xc.rows), 1e-5)) << what;
  else
    EXPECT_TRUE(all_close(got_d, std::vector<float>(n, 7.0f), 0.0, 0.0))
        << what << ": dlogits written although null was passed";
}

TEST_F(CudaTest, SoftmaxXentMatchesCpu) {
  const std::vector<XentCase> cases = {
      {7, 13, 3, false},   {10, 5, 3, false},   {1, 1, 3, false},     {5, 37, 3, false},
      {33, 256, 3, false}, {100, 10, 3, false}, {1000, 10, 3, false}, {100, 10, 50, false},
      {100, 10, 1, true},  {7, 13, 1, true}};
  for (const XentCase& xc : cases)
    for (bool with_dlogits : {true, false}) check_softmax_xent(gpu(), cpu(), xc, with_dlogits);
}

// ---- Adam --------------------------------------------------------------------------------------
// The kernel mirrors the CPU's Adam operation for operation (no FMA contraction)
// and both compute the bias corrections in double; they agree bit for bit on
// x86-64 unless CUDA's pow and glibc's differ in the last bit. Tolerance:
// atol = 1e-9, rtol = 1e-6 on params, m and v; the step counter is exact.
TEST_F(CudaTest, AdamMatchesCpu) {
  const int64_t network_floats = ParamLayout({784, 500, 500, 500, 10}).total_floats();
  for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{1000}, network_floats})
    for (int64_t first_step : {int64_t{0}, int64_t{7}}) {
      const auto sn = static_cast<std::size_t>(n);
      auto v0 = random_floats(sn, 33, 0.01);
      for (auto& x : v0) x = x * x;  // second moments are non-negative
      struct Out {
        std::vector<float> p, m, v;
        int64_t step;
      };
      const auto run = [&](Backend& be) {
        DeviceVec<float> dp(be, random_floats(sn, 31, 0.1)), dm(be, random_floats(sn, 32, 0.01));
        DeviceVec<float> dv(be, v0);
        OptimizerState st;
        st.step = first_step;
        DeviceVec<OptimizerState> dstate(be, {st});
        for (uint64_t it = 0; it < 3; ++it) {
          DeviceVec<float> dg(be, random_floats(sn, 40 + it));
          be.adam_step(dp.get(), dg.get(), dm.get(), dv.get(), n, dstate.get());
        }
        return Out{dp.download(), dm.download(), dv.download(), dstate.download()[0].step};
      };
      const Out want = run(cpu()), got = run(gpu());
      const std::string what =
          "n " + std::to_string(n) + " from step " + std::to_string(first_step);
      EXPECT_EQ(want.step, first_step + 3) << what;
      EXPECT_EQ(got.step, first_step + 3) << what;
      EXPECT_TRUE(all_close(got.p, want.p, 1e-9, 1e-6)) << what << " params";
      EXPECT_TRUE(all_close(got.m, want.m, 1e-9, 1e-6)) << what << " m";
      EXPECT_TRUE(all_close(got.v, want.v, 1e-9, 1e-6)) << what << " v";
    }
}

}  // namespace
}  // namespace mlp
