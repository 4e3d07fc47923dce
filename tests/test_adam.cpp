// Adam against its closed form (Kingma & Ba, Algorithm 1), in double:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = ++step
// at t = 1 and t = 2 (where a missing or off-by-one bias correction shows),
// from a non-zero step, through Backend::adam_step and through Model::update
// (every vector width giving the same bits: tests/test_vector_width.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "mlp/model.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::all_near;
using testing::DeviceVec;
using testing::random_floats;

// The optimizer state as Backend::adam_step reads it: step, hyperparameters,
// and the default (constant) learning-rate schedule.
std::vector<OptimizerState> state_at(int64_t step, const AdamHyper& h) {
  OptimizerState st;
  st.step = step;
  st.adam = h;
  return {st};
}

struct AdamRef {
  std::vector<double> p, m, v;
};

AdamRef closed_form(const std::vector<float>& p, const std::vector<float>& g,
                    const std::vector<float>& m, const std::vector<float>& v, const AdamHyper& h,
                    int64_t t) {
  AdamRef r{{}, {}, {}};
  const double b1 = h.beta1, b2 = h.beta2;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double mi = b1 * m[i] + (1 - b1) * g[i];
    const double vi = b2 * v[i] + (1 - b2) * double{g[i]} * g[i];
    const double mhat = mi / (1 - std::pow(b1, static_cast<double>(t)));
    const double vhat = vi / (1 - std::pow(b2, static_cast<double>(t)));
    r.m.push_back(mi);
    r.v.push_back(vi);
    r.p.push_back(p[i] - double{h.lr} * mhat / (std::sqrt(vhat) + h.eps));
  }
  return r;
}

// Float rounding of p (|p| <= ~4) plus a small fraction of the step itself.
void expect_matches(const std::vector<float>& got_p, const std::vector<float>& got_m,
                    const std::vector<float>& got_v, const AdamRef& want, const AdamHyper& h) {
  EXPECT_TRUE(all_near(got_m, want.m, 1e-9, 1e-5));
  EXPECT_TRUE(all_near(got_v, want.v, 1e-12, 1e-5));
  EXPECT_TRUE(all_near(got_p, want.p, 1e-6 + 1e-4 * h.lr, 1e-6));
}

class Adam : public ::testing::TestWithParam<int64_t> {};  // n: odd small, and large
INSTANTIATE_TEST_SUITE_P(Sizes, Adam, ::testing::Values(int64_t{7}, int64_t{40001}));

TEST_P(Adam, TwoStepsMatchClosedFormWithBiasCorrection) {
  const auto n = static_cast<std::size_t>(GetParam());
  auto be = make_cpu_backend(CpuOptions{2});
  // Defaults, and hyperparameters far from them so every term matters.
  for (const AdamHyper h : {AdamHyper{}, AdamHyper{0.05f, 0.5f, 0.75f, 1e-3f}}) {
    SCOPED_TRACE(::testing::Message() << "lr " << h.lr << " b1 " << h.beta1 << " b2 " << h.beta2);
    const auto p0 = random_floats(n, 1), g1 = random_floats(n, 2), g2 = random_floats(n, 3, 0.1);
    const std::vector<float> zeros(n, 0.0f);
    DeviceVec<float> p(*be, p0), g(*be, g1), m(*be, zeros), v(*be, zeros);
    DeviceVec<OptimizerState> state(*be, state_at(0, h));

    be->adam_step(p.get(), g.get(), m.get(), v.get(), GetParam(), state.get());
    EXPECT_EQ(state.download()[0].step, 1);
    const AdamRef r1 = closed_form(p0, g1, zeros, zeros, h, 1);
    expect_matches(p.download(), m.download(), v.download(), r1, h);

    // t = 2 starts from the state step 1 left (as the kernel left it, in float).
    const auto p1 = p.download(), m1 = m.download(), v1 = v.download();
    be->upload(g.get(), g2.data(), n * sizeof(float));
    be->adam_step(p.get(), g.get(), m.get(), v.get(), GetParam(), state.get());
    EXPECT_EQ(state.download()[0].step, 2);
    expect_matches(p.download(), m.download(), v.download(), closed_form(p1, g2, m1, v1, h, 2), h);
  }
}

TEST(AdamStep, UsesTheStoredStepForBiasCorrection) {
  // Resuming at step 5 must correct with t = 6, not 1.
  auto be = make_cpu_backend(CpuOptions{1});
  const AdamHyper h{0.01f, 0.8f, 0.9f, 1e-6f};
  const std::size_t n = 9;
  const auto p0 = random_floats(n, 4), g = random_floats(n, 5);
  auto m0 = random_floats(n, 6, 0.1), v0 = random_floats(n, 7, 0.1);
  for (auto& x : v0) x = x * x;  // second moments are non-negative
  DeviceVec<float> p(*be, p0), dg(*be, g), m(*be, m0), v(*be, v0);
  DeviceVec<OptimizerState> state(*be, state_at(5, h));
  be->adam_step(p.get(), dg.get(), m.get(), v.get(), static_cast<int64_t>(n), state.get());
  EXPECT_EQ(state.download()[0].step, 6);
  expect_matches(p.download(), m.download(), v.download(), closed_form(p0, g, m0, v0, h, 6), h);
}

TEST(AdamStep, RejectsBadArguments) {
  auto be = make_cpu_backend(CpuOptions{1});
  DeviceVec<float> x(*be, std::vector<float>(4));
  DeviceVec<OptimizerState> state(*be, state_at(0, AdamHyper{}));
  const auto call = [&](int64_t n, OptimizerState* s) {
    return testing::throws_error([&] { be->adam_step(x.get(), x.get(), x.get(), x.get(), n, s); },
                                 ExitCode::kFailure, {"adam_step"});
  };
  EXPECT_TRUE(call(0, state.get()));
  EXPECT_TRUE(call(4, nullptr));
  EXPECT_EQ(state.download()[0].step, 0) << "a rejected call must not advance the step";
}

// The hyperparameters live in backend memory, so they are checked where they
// are set: a Model refuses them, naming the flag.
TEST(AdamStep, ModelRefusesBadHyperparameters) {
  auto be = make_cpu_backend(CpuOptions{1});
  const auto refused = [&](AdamHyper h, const char* flag) {
    return testing::throws_error(
        [&] {
          Model(*be, {4, 3}, 2, h, false);
        },
        ExitCode::kUsage, {flag});
  };
  EXPECT_TRUE(refused(AdamHyper{0.0f, 0.9f, 0.999f, 1e-8f}, "--lr"));
  EXPECT_TRUE(refused(AdamHyper{1e-3f, 1.0f, 0.999f, 1e-8f}, "--beta1"));
  EXPECT_TRUE(refused(AdamHyper{1e-3f, 0.9f, 1.0f, 1e-8f}, "--beta2"));
  EXPECT_TRUE(refused(AdamHyper{1e-3f, 0.9f, 0.999f, 0.0f}, "--eps"));
  EXPECT_TRUE(refused(AdamHyper{std::nanf(""), 0.9f, 0.999f, 1e-8f}, "--lr"));
  EXPECT_TRUE(refused(AdamHyper{INFINITY, 0.9f, 0.999f, 1e-8f}, "--lr"));
  EXPECT_TRUE(refused(AdamHyper{1e-3f, 0.9f, 0.999f, INFINITY}, "--eps"));
}

TEST(AdamStep, ModelUpdateAppliesAdamToTheFlatBuffer) {
  // Model::update is one Adam step over params/grads/m/v with the model's
  // hyperparameters; state() exposes the result and the step counter.
  auto be = make_cpu_backend(CpuOptions{1});
  const AdamHyper h{0.02f, 0.85f, 0.95f, 1e-7f};
  Model model(*be, {6, 5, 3}, 4, h, false);
  model.set_params(initial_params(model.layout(), InitScheme::kNormal, 3));
  const ModelState before = model.state();
  ASSERT_EQ(before.step, 0);
  DeviceVec<uint8_t> images(*be, testing::pattern_bytes(4 * 6, 1));
  DeviceVec<uint8_t> labels(*be, std::vector<uint8_t>{0, 1, 2, 1});
  DeviceVec<double> metrics(*be, std::vector<double>{0.0, 0.0});
  for (int64_t t = 1; t <= 2; ++t) {
    const ModelState s0 = model.state();
    model.forward(images.get(), 4);
    model.backward(labels.get(), 4, metrics.get());
    std::vector<float> g(s0.params.size());
    be->download(g.data(), model.grads(), g.size() * sizeof(float));
    model.update();
    const ModelState s1 = model.state();
    EXPECT_EQ(s1.step, t);
    expect_matches(s1.params, s1.m, s1.v, closed_form(s0.params, g, s0.m, s0.v, h, t), h);
  }
}

}  // namespace
}  // namespace mlp
