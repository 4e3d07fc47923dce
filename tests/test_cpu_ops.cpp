// Every Backend op on the CPU backend against a naive loop written here, on
// odd shapes (1x1, 3x17, 7x13, and one large enough for the threaded path),
// with 1 and 2 threads, through the public Backend API so the shape checks
// are exercised too. softmax_xent is checked against double precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mlp/backend.h"
#include "mlp/error.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::all_near;
using testing::DeviceVec;
using testing::near;
using testing::random_floats;
using testing::throws_error;

struct Shape {
  int64_t rows, cols;
};
// 257 x 131 = 33667 elements: above any sensible "go parallel" threshold.
const Shape kShapes[] = {{1, 1}, {3, 17}, {7, 13}, {13, 7}, {257, 131}};

class CpuOps : public ::testing::TestWithParam<int> {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(CpuOptions{GetParam()});
};

INSTANTIATE_TEST_SUITE_P(Threads, CpuOps, ::testing::Values(1, 2), [](const auto& param_info) {
  return "threads" + std::to_string(param_info.param);
});

// ---- gemm ----------------------------------------------------------------------------

// c = alpha * op(a) * op(b) + beta * c in double, from row-major host arrays.
std::vector<double> naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                               const std::vector<float>& a, const std::vector<float>& b, float beta,
                               const std::vector<float>& c, std::vector<double>* mag) {
  std::vector<double> out(static_cast<std::size_t>(m * n));
  mag->assign(out.size(), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double x = ta ? a[p * m + i] : a[i * k + p];  // a stored (k, m) when transposed
        const double y = tb ? b[j * k + p] : b[p * n + j];  // b stored (n, k) when transposed
        s += x * y;
        sa += std::abs(x * y);
      }
      out[i * n + j] = alpha * s + beta * double{c[i * n + j]};
      (*mag)[i * n + j] = std::abs(alpha) * sa + std::abs(beta * c[i * n + j]);
    }
  return out;
}

TEST_P(CpuOps, GemmMatchesNaiveLoopInAllTransposes) {
  struct Dims {
    int64_t m, n, k;
  };
  // The last two are big enough (> 4 MFLOP) for a threaded backend to split c
  // by columns and by rows, with ragged last blocks.
  const Dims dims[] = {{7, 5, 13}, {1, 1, 1},     {3, 17, 1},     {1, 5, 17},
                       {3, 1, 17}, {64, 33, 129}, {100, 301, 70}, {301, 100, 70}};
  const std::pair<float, float> coeffs[] = {{1.0f, 0.0f}, {0.7f, 0.3f}, {-2.0f, 1.0f}};
  uint64_t seed = 1;
  for (const Dims d : dims)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [alpha, beta] : coeffs) {
          const auto a = random_floats(static_cast<std::size_t>(d.m * d.k), ++seed);
          const auto b = random_floats(static_cast<std::size_t>(d.k * d.n), ++seed);
          const auto c0 = random_floats(static_cast<std::size_t>(d.m * d.n), ++seed);
          DeviceVec<float> da(*be, a), db(*be, b), dc(*be, c0);
          const CMat am = ta ? CMat{da.get(), d.k, d.m} : CMat{da.get(), d.m, d.k};
          const CMat bm = tb ? CMat{db.get(), d.n, d.k} : CMat{db.get(), d.k, d.n};
          be->gemm(ta ? Trans::kYes : Trans::kNo, tb ? Trans::kYes : Trans::kNo, alpha, am, bm,
                   beta, Mat{dc.get(), d.m, d.n});
          std::vector<double> mag;
          const auto want = naive_gemm(ta, tb, d.m, d.n, d.k, alpha, a, b, beta, c0, &mag);
          const auto got = dc.download();
          for (std::size_t i = 0; i < want.size(); ++i) {
            // float accumulation: error bounded by ~k ulps of the sum of |terms|
            const double tol = 1e-6 + 4e-7 * static_cast<double>(d.k) * mag[i];
            ASSERT_TRUE(near(got[i], want[i], tol))
                << "m n k " << d.m << " " << d.n << " " << d.k << " ta " << ta << " tb " << tb
                << " alpha " << alpha << " beta " << beta << " index " << i;
          }
        }
}

TEST_P(CpuOps, GemmBetaZeroIgnoresNaNInOutput) {
  // beta = 0 means "overwrite": garbage (even NaN) in c must not leak through.
  const auto a = random_floats(7 * 13, 1), b = random_floats(13 * 5, 2);
  DeviceVec<float> da(*be, a), db(*be, b), dc(*be, std::vector<float>(35, std::nanf("")));
  be->gemm(Trans::kNo, Trans::kNo, 1.0f, CMat{da.get(), 7, 13}, CMat{db.get(), 13, 5}, 0.0f,
           Mat{dc.get(), 7, 5});
  for (float x : dc.download()) ASSERT_TRUE(std::isfinite(x));
}

TEST_P(CpuOps, GemmShapeMismatchesThrow) {
  DeviceVec<float> a(*be, std::vector<float>(7 * 13)), b(*be, std::vector<float>(13 * 5)),
      c(*be, std::vector<float>(7 * 5));
  const auto expect_shape_error = [&](Trans ta, Trans tb, CMat am, CMat bm, Mat cm) {
    return throws_error([&] { be->gemm(ta, tb, 1.0f, am, bm, 0.0f, cm); }, ExitCode::kFailure,
                        {"gemm"});
  };
  const Trans N = Trans::kNo, T = Trans::kYes;
  // inner dimensions differ
  EXPECT_TRUE(expect_shape_error(N, N, {a.get(), 7, 13}, {b.get(), 12, 5}, {c.get(), 7, 5}));
  // the transpose flag changes which dimension is inner
  EXPECT_TRUE(expect_shape_error(T, N, {a.get(), 7, 13}, {b.get(), 13, 5}, {c.get(), 7, 5}));
  EXPECT_TRUE(expect_shape_error(N, T, {a.get(), 7, 13}, {b.get(), 13, 5}, {c.get(), 7, 5}));
  // c has the wrong shape
  EXPECT_TRUE(expect_shape_error(N, N, {a.get(), 7, 13}, {b.get(), 13, 5}, {c.get(), 5, 7}));
  EXPECT_TRUE(expect_shape_error(N, N, {a.get(), 7, 13}, {b.get(), 13, 5}, {c.get(), 7, 4}));
  // empty or null operands
  EXPECT_TRUE(expect_shape_error(N, N, {a.get(), 0, 13}, {b.get(), 13, 5}, {c.get(), 0, 5}));
  EXPECT_TRUE(expect_shape_error(N, N, {nullptr, 7, 13}, {b.get(), 13, 5}, {c.get(), 7, 5}));
  EXPECT_TRUE(expect_shape_error(N, N, {a.get(), 7, 13}, {b.get(), 13, 5}, {nullptr, 7, 5}));
}

// ---- elementwise ops -----------------------------------------------------------------------

TEST_P(CpuOps, U8ToFloatScalesAndBinarizes) {
  for (const Shape s : kShapes) {
    std::vector<uint8_t> in(static_cast<std::size_t>(s.rows * s.cols));
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 37 + i / 256);
    DeviceVec<uint8_t> din(*be, in);
    DeviceVec<float> out(*be, std::vector<float>(in.size(), -7.0f));
    be->u8_to_float(din.get(), Mat{out.get(), s.rows, s.cols}, false);
    std::vector<double> want(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) want[i] = in[i] / 255.0;
    EXPECT_TRUE(all_near(out.download(), want, 0.0, 1e-7)) << s.rows << "x" << s.cols;

    be->u8_to_float(din.get(), Mat{out.get(), s.rows, s.cols}, true);
    for (std::size_t i = 0; i < in.size(); ++i) want[i] = in[i] >= 128 ? 1.0 : 0.0;
    EXPECT_TRUE(all_near(out.download(), want, 0.0)) << "binarize " << s.rows << "x" << s.cols;
  }
}

TEST_P(CpuOps, U8ToFloatThresholdIsAt128) {
  std::vector<uint8_t> in(256);
  for (int i = 0; i < 256; ++i) in[static_cast<std::size_t>(i)] = static_cast<uint8_t>(i);
  DeviceVec<uint8_t> din(*be, in);
  DeviceVec<float> out(*be, std::vector<float>(256));
  be->u8_to_float(din.get(), Mat{out.get(), 16, 16}, true);
  const auto got = out.download();
  EXPECT_EQ(got[127], 0.0f);
  EXPECT_EQ(got[128], 1.0f);
  be->u8_to_float(din.get(), Mat{out.get(), 16, 16}, false);
  EXPECT_EQ(out.download()[0], 0.0f);
  EXPECT_EQ(out.download()[255], 1.0f);
}

TEST_P(CpuOps, BiasReluAndBiasForward) {
  for (const Shape s : kShapes) {
    const auto z = random_floats(static_cast<std::size_t>(s.rows * s.cols), 5);
    const auto bias = random_floats(static_cast<std::size_t>(s.cols), 6, 0.5);
    DeviceVec<float> dz(*be, z), dbias(*be, bias), dz2(*be, z);
    be->bias_relu_forward(Mat{dz.get(), s.rows, s.cols}, dbias.get());
    be->bias_forward(Mat{dz2.get(), s.rows, s.cols}, dbias.get());
    std::vector<float> relu(z.size()), lin(z.size());
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c) {
        const float x = z[r * s.cols + c] + bias[c];  // one float add: results are exact
        lin[r * s.cols + c] = x;
        relu[r * s.cols + c] = x > 0 ? x : 0.0f;
      }
    EXPECT_TRUE(all_near(dz.download(), relu, 0.0)) << s.rows << "x" << s.cols;
    EXPECT_TRUE(all_near(dz2.download(), lin, 0.0)) << s.rows << "x" << s.cols;
  }
}

TEST_P(CpuOps, ReluBackwardMasksWhereActivationIsZero) {
  for (const Shape s : kShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    auto act = random_floats(n, 7);
    for (auto& a : act) a = a > 0 ? a : 0.0f;  // a ReLU output
    const auto grad = random_floats(n, 8);
    DeviceVec<float> dg(*be, grad), da(*be, act);
    be->relu_backward(Mat{dg.get(), s.rows, s.cols}, CMat{da.get(), s.rows, s.cols});
    std::vector<float> want(n);
    for (std::size_t i = 0; i < n; ++i) want[i] = act[i] > 0 ? grad[i] : 0.0f;
    EXPECT_TRUE(all_near(dg.download(), want, 0.0)) << s.rows << "x" << s.cols;
  }
}

TEST_P(CpuOps, BiasGradIsColumnSumsAndOverwrites) {
  for (const Shape s : kShapes) {
    const auto grad = random_floats(static_cast<std::size_t>(s.rows * s.cols), 9);
    DeviceVec<float> dg(*be, grad);
    DeviceVec<float> db(*be, std::vector<float>(static_cast<std::size_t>(s.cols), 123.0f));
    be->bias_grad(CMat{dg.get(), s.rows, s.cols}, db.get());
    std::vector<double> want(static_cast<std::size_t>(s.cols), 0.0), mag(want.size(), 0.0);
    // In float, the rows added in order: the exact bits the op promises at
    // every vector width.
    std::vector<float> in_row_order(want.size(), 0.0f);
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c) {
        want[c] += grad[r * s.cols + c];
        mag[c] += std::abs(grad[r * s.cols + c]);
        in_row_order[c] += grad[r * s.cols + c];
      }
    const auto got = db.download();
    for (std::size_t c = 0; c < want.size(); ++c)
      ASSERT_TRUE(near(got[c], want[c], 1e-6 + 2e-7 * static_cast<double>(s.rows) * mag[c]))
          << s.rows << "x" << s.cols << " column " << c;
    EXPECT_EQ(got, in_row_order) << s.rows << "x" << s.cols;
  }
}

TEST_P(CpuOps, ElementwiseShapeChecksThrow) {
  DeviceVec<float> a(*be, std::vector<float>(12)), b(*be, std::vector<float>(12));
  EXPECT_TRUE(throws_error(
      [&] {
        be->relu_backward(Mat{a.get(), 3, 4}, CMat{b.get(), 4, 3});
      },
      ExitCode::kFailure, {"relu_backward"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->bias_relu_forward(Mat{a.get(), 3, 4}, nullptr);
      },
      ExitCode::kFailure, {"bias_relu_forward"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->bias_forward(Mat{a.get(), 3, -4}, b.get());
      },
      ExitCode::kFailure, {"bias_forward"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->bias_grad(CMat{a.get(), 3, 4}, nullptr);
      },
      ExitCode::kFailure, {"bias_grad"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->u8_to_float(nullptr, Mat{a.get(), 3, 4}, false);
      },
      ExitCode::kFailure, {"u8_to_float"}));
}

// ---- softmax cross-entropy ---------------------------------------------------------------

struct XentRef {
  double loss_sum = 0;
  int64_t correct = 0;
  std::vector<double> dlogits;
};

XentRef naive_xent(const std::vector<float>& x, const std::vector<uint8_t>& labels, int64_t rows,
                   int64_t classes) {
  XentRef r;
  r.dlogits.resize(x.size());
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = x.data() + i * classes;
    int64_t arg = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (row[c] > row[arg]) arg = c;  // strictly greater: the first maximum wins
    const double mx = row[arg];
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(row[c] - mx);
    r.loss_sum += std::log(sum) - (row[labels[i]] - mx);
    r.correct += arg == labels[i];
    for (int64_t c = 0; c < classes; ++c)
      r.dlogits[i * classes + c] =
          (std::exp(row[c] - mx) / sum - (c == labels[i] ? 1.0 : 0.0)) / static_cast<double>(rows);
  }
  return r;
}

void check_xent(Backend& be, const std::vector<float>& x, const std::vector<uint8_t>& labels,
                int64_t rows, int64_t classes) {
  SCOPED_TRACE(::testing::Message() << rows << "x" << classes);
  const XentRef want = naive_xent(x, labels, rows, classes);
  DeviceVec<float> dx(be, x), dd(be, std::vector<float>(x.size(), 99.0f));
  DeviceVec<uint8_t> dl(be, labels);
  const std::vector<double> start{1.5, 2.0};  // metrics accumulate: they are added to
  DeviceVec<double> dm(be, start);
  be.softmax_xent(CMat{dx.get(), rows, classes}, dl.get(), dd.get(), dm.get());
  const auto m = dm.download();
  EXPECT_TRUE(near(m[kMetricLossSum] - start[0], want.loss_sum, 1e-5, 1e-5));
  EXPECT_EQ(m[kMetricCorrect] - start[1], static_cast<double>(want.correct));
  const auto d = dd.download();
  EXPECT_TRUE(all_near(d, want.dlogits, 1e-7, 1e-4));
  for (int64_t i = 0; i < rows; ++i) {
    double s = 0;
    for (int64_t c = 0; c < classes; ++c) s += d[i * classes + c];
    EXPECT_TRUE(near(s, 0.0, 1e-6)) << "gradient row " << i << " sums to " << s;
  }
  // Without dlogits: the same metrics, nothing else written.
  DeviceVec<double> dm2(be, std::vector<double>{0.0, 0.0});
  be.softmax_xent(CMat{dx.get(), rows, classes}, dl.get(), nullptr, dm2.get());
  const auto m2 = dm2.download();
  EXPECT_TRUE(near(m2[kMetricLossSum], want.loss_sum, 1e-5, 1e-5));
  EXPECT_EQ(m2[kMetricCorrect], static_cast<double>(want.correct));
}

std::vector<uint8_t> random_labels(int64_t rows, int64_t classes, uint64_t seed) {
  Pcg32 rng(seed, 5);
  std::vector<uint8_t> l(static_cast<std::size_t>(rows));
  for (auto& x : l) x = static_cast<uint8_t>(rng.below(static_cast<uint32_t>(classes)));
  return l;
}

TEST_P(CpuOps, SoftmaxXentMatchesDoublePrecision) {
  const Shape shapes[] = {{1, 1}, {1, 10}, {7, 13}, {100, 10}, {5, 3}, {3, 17}};
  uint64_t seed = 30;
  for (const Shape s : shapes) {
    const auto x = random_floats(static_cast<std::size_t>(s.rows * s.cols), ++seed, 3.0);
    check_xent(*be, x, random_labels(s.rows, s.cols, ++seed), s.rows, s.cols);
  }
}

TEST_P(CpuOps, SoftmaxXentCountsCorrectRows) {
  // Labels equal to each row's argmax: every row counts; shifted by one: none does.
  const int64_t rows = 9, classes = 10;
  const auto x = random_floats(static_cast<std::size_t>(rows * classes), 41);
  std::vector<uint8_t> hit(rows), miss(rows);
  for (int64_t i = 0; i < rows; ++i) {
    const auto row = x.begin() + i * classes;
    const auto arg = std::max_element(row, row + classes) - row;
    hit[i] = static_cast<uint8_t>(arg);
    miss[i] = static_cast<uint8_t>((arg + 1) % classes);
  }
  for (const auto& [labels, want] : {std::pair{hit, rows}, std::pair{miss, int64_t{0}}}) {
    DeviceVec<float> dx(*be, x);
    DeviceVec<uint8_t> dl(*be, labels);
    DeviceVec<double> dm(*be, std::vector<double>{0.0, 0.0});
    be->softmax_xent(CMat{dx.get(), rows, classes}, dl.get(), nullptr, dm.get());
    EXPECT_EQ(dm.download()[kMetricCorrect], static_cast<double>(want));
  }
}

TEST_P(CpuOps, SoftmaxXentLargeLogitsStayFinite) {
  // exp(1e4) overflows float and double: only a max-subtracting softmax survives.
  const std::vector<float> x{1e4f,  -1e4f, 0.0f,  5e3f,  // row 0
                             -1e4f, -1e4f, -1e4f, -1e4f + 1.0f, 3e4f, 3e4f - 2.0f, -3e4f, 0.0f};
  const std::vector<uint8_t> labels{1, 3, 1};  // row 0: huge loss (2e4), row 2: ~2
  check_xent(*be, x, labels, 3, 4);
  DeviceVec<float> dx(*be, x), dd(*be, std::vector<float>(x.size()));
  DeviceVec<uint8_t> dl(*be, labels);
  DeviceVec<double> dm(*be, std::vector<double>{0.0, 0.0});
  be->softmax_xent(CMat{dx.get(), 3, 4}, dl.get(), dd.get(), dm.get());
  const auto m = dm.download();
  ASSERT_TRUE(std::isfinite(m[kMetricLossSum]));
  // Closed forms: row 0 = 1e4 - (-1e4); row 1 = log(1 + 3/e); row 2 = 2 + log(1 + e^-2).
  const double want = 2e4 + std::log(1.0 + 3.0 * std::exp(-1.0)) + 2.0 + std::log1p(std::exp(-2.0));
  EXPECT_TRUE(near(m[kMetricLossSum], want, 1e-3, 1e-6));
  for (float v : dd.download()) ASSERT_TRUE(std::isfinite(v));
}

TEST_P(CpuOps, SoftmaxXentArgmaxTiesGoToFirstIndex) {
  // Row 0: all equal -> argmax 0. Row 1: max shared by 2 and 5 -> 2. Row 2: same, label 5.
  const std::vector<float> x{0.5f, 0.5f, 0.5f, 0.5f,  0.5f, 0.5f, -1.0f, 0.0f, 3.0f,
                             1.0f, 2.0f, 3.0f, -1.0f, 0.0f, 3.0f, 1.0f,  2.0f, 3.0f};
  const auto correct_for = [&](std::vector<uint8_t> labels) {
    DeviceVec<float> dx(*be, x);
    DeviceVec<uint8_t> dl(*be, labels);
    DeviceVec<double> dm(*be, std::vector<double>{0.0, 0.0});
    be->softmax_xent(CMat{dx.get(), 3, 6}, dl.get(), nullptr, dm.get());
    return dm.download()[kMetricCorrect];
  };
  EXPECT_EQ(correct_for({0, 2, 5}), 2.0);  // rows 0 and 1 hit; row 2's label is the second max
  EXPECT_EQ(correct_for({1, 5, 2}), 1.0);  // only row 2
  EXPECT_EQ(correct_for({5, 3, 3}), 0.0);
}

TEST_P(CpuOps, SoftmaxXentChecksItsArguments) {
  DeviceVec<float> x(*be, std::vector<float>(300));
  DeviceVec<uint8_t> l(*be, std::vector<uint8_t>(1));
  DeviceVec<double> m(*be, std::vector<double>(2));
  EXPECT_TRUE(throws_error(
      [&] {
        be->softmax_xent(CMat{x.get(), 1, 257}, l.get(), nullptr, m.get());
      },
      ExitCode::kFailure, {"softmax_xent", "256"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->softmax_xent(CMat{x.get(), 1, 10}, nullptr, nullptr, m.get());
      },
      ExitCode::kFailure, {"softmax_xent"}));
  EXPECT_TRUE(throws_error(
      [&] {
        be->softmax_xent(CMat{x.get(), 1, 10}, l.get(), nullptr, nullptr);
      },
      ExitCode::kFailure, {"softmax_xent"}));
  // dlogits keeps each exp while the row is summed: in place, or overlapping
  // the logits by one element, it would read its own output.
  for (const int64_t shift : {0, 9, -9})
    EXPECT_TRUE(throws_error(
        [&] {
          be->softmax_xent(CMat{x.get() + 100, 1, 10}, l.get(), x.get() + 100 + shift, m.get());
        },
        ExitCode::kFailure, {"softmax_xent", "overlaps"}))
        << shift;
  EXPECT_TRUE(throws_error(
      [&] {
        DeviceVec<float> db(*be, std::vector<float>(10));
        be->softmax_xent_backward(CMat{x.get(), 1, 10}, l.get(), Mat{x.get() + 5, 1, 10}, db.get(),
                                  m.get(), nullptr);
      },
      ExitCode::kFailure, {"softmax_xent_backward", "overlaps"}));
  be->softmax_xent(CMat{x.get(), 1, 10}, l.get(), x.get() + 10, m.get());  // adjacent is fine
}

}  // namespace
}  // namespace mlp
