// The CPU loops give the same bits at every vector width (src/cpu/vector_width.h):
// each op with a vectorized loop, run through the Backend at every width this
// machine has (baseline x86-64, AVX2, AVX-512), on 1 and 2 threads, on shapes
// with ragged vector tails, equals the baseline run bit for bit; so does a
// short training run. With tests/test_cpu_ops.cpp (each op against a plain
// loop at the widest width), every width computes the plain loops' bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "cpu/vector_width.h"
#include "mlp/model.h"
#include "mlp/trainer.h"
#include "testing.h"

namespace mlp {
namespace {

using cpu::ScopedVectorWidth;
using cpu::VectorWidth;
using testing::DeviceVec;
using testing::random_floats;

TEST(VectorWidth, AScopedWidthPicksItsVariantOnEveryThreadAndIsRestored) {
  const auto& widths = cpu::supported_vector_widths();
  ASSERT_FALSE(widths.empty());
  EXPECT_EQ(widths.front(), VectorWidth::kBaseline);
  const VectorWidth widest = widths.back();
  EXPECT_EQ(cpu::active_vector_width(), widest);
  std::string listed;  // what the width tests below compare on this machine
  for (const VectorWidth w : widths) listed += std::string(" ") + cpu::vector_width_name(w);
  std::printf("[ info ] vector widths this CPU runs:%s\n", listed.c_str());
  for (const VectorWidth w : widths) {
    ScopedVectorWidth scoped(w);
    EXPECT_EQ(cpu::active_vector_width(), w);
    const int want = w == VectorWidth::kBaseline ? 0 : w == VectorWidth::kAvx2 ? 1 : 2;
    EXPECT_EQ(cpu::pick_vector_variant(0, 1, 2), want) << cpu::vector_width_name(w);
    // Process-wide: another thread (as the pool's workers are) picks the same.
    int seen_elsewhere = -1;
    std::thread([&] { seen_elsewhere = cpu::pick_vector_variant(0, 1, 2); }).join();
    EXPECT_EQ(seen_elsewhere, want);
    // And the backend says which width it runs (info, train's and bench's headers).
    const std::string name = cpu::vector_width_name(w);
    EXPECT_EQ(cpu_vector_width(), name);
    EXPECT_NE(make_cpu_backend(CpuOptions{1})->describe().find(", " + name + " loops, "),
              std::string::npos);
  }
  EXPECT_EQ(cpu::active_vector_width(), widest);
  for (const VectorWidth w : {VectorWidth::kAvx2, VectorWidth::kAvx512}) {
    if (!cpu::vector_width_supported(w)) {
      EXPECT_THROW(ScopedVectorWidth scoped(w), std::invalid_argument);
      EXPECT_EQ(cpu::active_vector_width(), widest);
    }
  }
}

// What one op run produces: every output buffer's bytes, in a fixed order.
using Outputs = std::vector<std::vector<float>>;

// Runs `op` at every supported width and expects each width's outputs to be
// the baseline's, bit for bit (memcmp: NaN payloads and signed zeros count).
void expect_same_bits_at_every_width(const std::string& what, const std::function<Outputs()>& op) {
  Outputs baseline;
  for (const VectorWidth w : cpu::supported_vector_widths()) {
    ScopedVectorWidth scoped(w);
    const Outputs got = op();
    if (w == VectorWidth::kBaseline) {
      baseline = got;
      continue;
    }
    ASSERT_EQ(got.size(), baseline.size()) << what;
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].size(), baseline[i].size()) << what;
      EXPECT_EQ(0, std::memcmp(got[i].data(), baseline[i].data(), got[i].size() * sizeof(float)))
          << what << ", output " << i << ": " << cpu::vector_width_name(w)
          << " differs from baseline";
    }
  }
}

// Normal values with the cases a select or a sum can get wrong mixed in:
// zeros of both signs, NaN, infinity.
std::vector<float> awkward_floats(std::size_t n, uint64_t seed) {
  auto v = random_floats(n, seed);
  for (std::size_t i = 0; i < n; i += 97) v[i] = 0.0f;
  for (std::size_t i = 13; i < n; i += 101) v[i] = -0.0f;
  for (std::size_t i = 29; i < n; i += 503) v[i] = std::nanf("");
  for (std::size_t i = 41; i < n; i += 1009) v[i] = -INFINITY;
  return v;
}

class VectorWidths : public ::testing::TestWithParam<int> {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(CpuOptions{GetParam()});
};

INSTANTIATE_TEST_SUITE_P(Threads, VectorWidths, ::testing::Values(1, 2),
                         [](const auto& param_info) {
                           return "threads" + std::to_string(param_info.param);
                         });

// 37 x 1003: no row a multiple of 4, 8 or 16 floats, and above the size at
// which the ops split across the pool; 1 x 5: shorter than any vector.
struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{37, 1003}, {1, 5}};

TEST_P(VectorWidths, ElementwiseOpsGiveTheSameBitsAtEveryWidth) {
  for (const Shape s : kShapes) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.cols) + " ";
    const auto z0 = awkward_floats(n, 1), bias = awkward_floats(s.cols, 2);
    auto act = random_floats(n, 3);
    for (auto& a : act) a = a > 0 ? a : 0.0f;  // a ReLU output
    const auto pixels = testing::pattern_bytes(n, 4);
    DeviceVec<uint8_t> px(*be, pixels);
    DeviceVec<float> dbias(*be, bias), dact(*be, act);

    for (const bool binarize : {false, true})
      expect_same_bits_at_every_width(shape + "u8_to_float", [&] {
        DeviceVec<float> out(*be, std::vector<float>(n));
        be->u8_to_float(px.get(), Mat{out.get(), s.rows, s.cols}, binarize);
        return Outputs{out.download()};
      });
    expect_same_bits_at_every_width(shape + "bias_relu_forward", [&] {
      DeviceVec<float> z(*be, z0);
      be->bias_relu_forward(Mat{z.get(), s.rows, s.cols}, dbias.get());
      return Outputs{z.download()};
    });
    expect_same_bits_at_every_width(shape + "bias_forward", [&] {
      DeviceVec<float> z(*be, z0);
      be->bias_forward(Mat{z.get(), s.rows, s.cols}, dbias.get());
      return Outputs{z.download()};
    });
    expect_same_bits_at_every_width(shape + "relu_backward", [&] {
      DeviceVec<float> g(*be, z0);
      be->relu_backward(Mat{g.get(), s.rows, s.cols}, CMat{dact.get(), s.rows, s.cols});
      return Outputs{g.download()};
    });
    expect_same_bits_at_every_width(shape + "bias_grad", [&] {
      DeviceVec<float> g(*be, z0), db(*be, std::vector<float>(s.cols));
      be->bias_grad(CMat{g.get(), s.rows, s.cols}, db.get());
      return Outputs{db.download()};
    });
    expect_same_bits_at_every_width(shape + "relu_backward_bias_grad", [&] {
      DeviceVec<float> g(*be, z0), db(*be, std::vector<float>(s.cols));
      be->relu_backward_bias_grad(Mat{g.get(), s.rows, s.cols}, CMat{dact.get(), s.rows, s.cols},
                                  db.get());
      return Outputs{g.download(), db.download()};
    });
  }
}

TEST_P(VectorWidths, GemmWithBiasAndReluGivesTheSameBitsAtEveryWidth) {
  // The GEMM is the library's; the bias + ReLU after each block is ours.
  const int64_t m = 100, k = 67, n = 301;
  const auto x = random_floats(static_cast<std::size_t>(m * k), 5);
  const auto w = random_floats(static_cast<std::size_t>(k * n), 6);
  DeviceVec<float> dx(*be, x), dw(*be, w), bias(*be, awkward_floats(n, 7));
  for (const bool relu : {false, true})
    expect_same_bits_at_every_width(relu ? "gemm_bias_act relu" : "gemm_bias_act", [&] {
      DeviceVec<float> out(*be, std::vector<float>(static_cast<std::size_t>(m * n)));
      be->gemm_bias_act(CMat{dx.get(), m, k}, CMat{dw.get(), k, n}, bias.get(), relu,
                        Mat{out.get(), m, n});
      return Outputs{out.download()};
    });
}

TEST_P(VectorWidths, AdamGivesTheSameBitsAtEveryWidth) {
  // GCC would contract a*b+c into FMAs in the AVX2 and AVX-512 variants unless
  // told not to (-ffp-contract=off); then the result would depend on the CPU.
  const int64_t n = 70001;  // split across the pool; not a multiple of any width
  const auto p0 = random_floats(n, 8), g = random_floats(n, 9);
  auto m0 = random_floats(n, 10, 0.1), v0 = random_floats(n, 11, 0.1);
  for (auto& x : v0) x = x * x;
  DeviceVec<float> dg(*be, g);
  OptimizerState state;
  state.step = 6;
  state.adam = AdamHyper{1.3e-3f, 0.9f, 0.999f, 1e-8f};
  expect_same_bits_at_every_width("adam_step", [&] {
    DeviceVec<float> p(*be, p0), m(*be, m0), v(*be, v0);
    DeviceVec<OptimizerState> st(*be, std::vector<OptimizerState>{state});
    be->adam_step(p.get(), dg.get(), m.get(), v.get(), n, st.get());
    return Outputs{p.download(), m.download(), v.download()};
  });
  // And the baseline is the plain formula, each product rounded on its own.
  ScopedVectorWidth baseline(VectorWidth::kBaseline);
  DeviceVec<float> p(*be, p0), m(*be, m0), v(*be, v0);
  DeviceVec<OptimizerState> st(*be, std::vector<OptimizerState>{state});
  be->adam_step(p.get(), dg.get(), m.get(), v.get(), n, st.get());
  const auto got_m = m.download(), got_v = v.download();
  for (int64_t i = 0; i < n; ++i) {
    volatile float a = 0.9f * m0[i], b = (1.0f - 0.9f) * g[i];
    volatile float c = 0.999f * v0[i], d = (1.0f - 0.999f) * g[i] * g[i];
    ASSERT_EQ(got_m[i], a + b) << i;
    ASSERT_EQ(got_v[i], c + d) << i;
  }
}

TEST_P(VectorWidths, TrainingGivesTheSameBitsAtEveryWidth) {
  // 2 epochs of 6 steps on 15x15 pixel-noise images through the Trainer (the
  // captured step plan, side-by-side dW/dX, Adam while the layer is in cache).
  Dataset train;
  train.count = 300;
  train.rows = train.cols = 15;
  train.images = testing::pattern_bytes(300 * 225, 12);
  for (int64_t i = 0; i < train.count; ++i) train.labels.push_back(static_cast<uint8_t>(i % 10));
  TrainerOptions opts;
  opts.epochs = 2;
  opts.batch_size = 50;
  opts.evaluate = false;
  expect_same_bits_at_every_width("training", [&] {
    Model model(*be, {225, 300, 200, 10}, opts.batch_size, AdamHyper{}, false);
    model.set_params(initial_params(model.layout(), InitScheme::kHe, 5));
    Trainer trainer(*be, model, train, nullptr, opts);
    const auto stats = trainer.run({});
    EXPECT_TRUE(std::isfinite(stats.back().loss));
    const ModelState s = model.state();
    return Outputs{s.params, s.m, s.v, {static_cast<float>(stats.back().loss)}};
  });
}

}  // namespace
}  // namespace mlp
