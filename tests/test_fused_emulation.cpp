// The fused engine's CPU emulation against the CPU reference (Model on the CPU backend):
// the element recipes first (exp/log accuracy, Adam and softmax against the backend ops), then
// one full step (loss, logits, every gradient, updated parameters and both moments) on odd and
// MNIST shapes, bitwise determinism across runs and block orders, and several steps in one
// launch against one launch per step and against the reference's losses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "fused_test_util.h"
#include "mlp/fused_math.h"

namespace mlp::fused {
namespace {

using fused_test::Batch;
using fused_test::random_batch;

int64_t ulps(float a, float b) {
  const auto ordered = [](float x) {
    const uint32_t u = float_bits(x);
    return u & 0x80000000u ? -static_cast<int64_t>(u & 0x7fffffffu) : static_cast<int64_t>(u);
  };
  return std::abs(ordered(a) - ordered(b));
}

TEST(FusedMath, ExpWithinTwoUlpsOfCorrectlyRounded) {
  int64_t worst = 0;
  for (float x = -104.0f; x <= 88.75f; x += 0.000731f) {
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    worst = std::max(worst, ulps(exp_f(x), want));
  }
  EXPECT_LE(worst, 2);
  EXPECT_EQ(exp_f(0.0f), 1.0f);
  EXPECT_TRUE(std::isinf(exp_f(89.0f)));
  EXPECT_EQ(exp_f(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(exp_f(NAN)));
}

TEST(FusedMath, LogWithinTwoUlpsOfCorrectlyRounded) {
  int64_t worst = 0;
  const auto check = [&](float x) {
    worst = std::max(worst, ulps(log_f(x), static_cast<float>(std::log(static_cast<double>(x)))));
  };
  for (uint32_t u = 1; u < 0x00800000u; u += 997) check(bits_float(u));  // subnormals
  for (float x = 1.17549435e-38f; x < 3e38f; x *= 1.0007f) check(x);
  for (float x = 0.5f; x < 2.0f; x += 1e-5f) check(x);  // near 1, where the result is tiny
  EXPECT_LE(worst, 2);
  EXPECT_EQ(log_f(1.0f), 0.0f);
  EXPECT_TRUE(std::isnan(log_f(-1.0f)));
  EXPECT_TRUE(std::isinf(log_f(0.0f)));
}

// The element recipe is the CPU backend's Adam, bit for bit, at any step and hyperparameters.
TEST(FusedMath, AdamElementMatchesCpuAdamBitwise) {
  for (const AdamHyper h : {AdamHyper{}, AdamHyper{0.05f, 0.5f, 0.75f, 1e-3f}}) {
    for (int64_t step0 : {int64_t{0}, int64_t{7}, int64_t{12345}}) {
      const std::size_t n = 1000;
      Pcg32 rng(static_cast<uint64_t>(step0) + 1, 5);
      std::vector<float> p(n), g(n), m(n), v(n);
      for (std::size_t i = 0; i < n; ++i) {
        p[i] = static_cast<float>(rng.normal());
        g[i] = static_cast<float>(rng.normal() * 1e-2);
        m[i] = step0 ? static_cast<float>(rng.normal() * 1e-2) : 0.0f;
        v[i] = step0 ? static_cast<float>(std::abs(rng.normal()) * 1e-4) : 0.0f;
      }
      std::vector<float> pf = p, mf = m, vf = v;
      int64_t step = step0;
      fused_ref::cpu_adam(p, g, m, v, h, &step);
      OptimizerState st;
      st.adam = h;
      const AdamScalars a = adam_scalars(st, step0 + 1);
      for (std::size_t i = 0; i < n; ++i) adam_element(&pf[i], &mf[i], &vf[i], g[i], a);
      EXPECT_EQ(step, step0 + 1);
      EXPECT_TRUE(fused_test::same_bits(pf, p)) << "params, step " << step0 + 1;
      EXPECT_TRUE(fused_test::same_bits(mf, m)) << "m, step " << step0 + 1;
      EXPECT_TRUE(fused_test::same_bits(vf, v)) << "v, step " << step0 + 1;
    }
  }
}

TEST(FusedMath, SoftmaxRowMatchesCpuSoftmax) {
  for (const auto& [rows, classes] : {std::pair<int, int>{7, 13}, {100, 10}, {10, 5}, {1, 1}}) {
    Pcg32 rng(static_cast<uint64_t>(rows * 31 + classes), 9);
    std::vector<float> x(static_cast<std::size_t>(rows * classes));
    for (float& e : x) e = static_cast<float>(rng.normal() * 4.0);
    std::vector<uint8_t> labels;
    for (int r = 0; r < rows; ++r)
      labels.push_back(static_cast<uint8_t>(rng.below(static_cast<uint32_t>(classes))));
    double want_metrics[2] = {0, 0};
    const std::vector<float> want =
        fused_ref::cpu_softmax_xent(x, rows, classes, labels, want_metrics);
    std::vector<float> got(x.size());
    double loss = 0.0;
    int64_t correct = 0;
    const float inv_rows = 1.0f / static_cast<float>(rows);
    for (int r = 0; r < rows; ++r) {
      int ok = 0;
      loss += softmax_xent_row(x.data() + r * classes, classes, labels[r], inv_rows,
                               got.data() + r * classes, &ok);
      correct += ok;
    }
    // exp_f and log_f are within 2 ulp of libm's: a few ulp on every output.
    EXPECT_TRUE(fused_test::close(got, want, 0, want.size(), 1e-7, 1e-5)) << rows << "x" << classes;
    EXPECT_TRUE(std::abs(loss - want_metrics[0]) <= 1e-5 + 1e-6 * std::abs(want_metrics[0]));
    EXPECT_EQ(static_cast<double>(correct), want_metrics[1]);
  }
}

// ---- one full step against the reference ------------------------------------------------

struct Case {
  std::vector<int64_t> sizes;
  int64_t batch;
  int32_t grid;
  int64_t step0;  // Adam steps already taken (m, v random when > 0)
  bool binarize = false;
};

Plan plan_of(const Case& c) {
  Plan p{};
  const Verdict v = make_plan({c.sizes.data(), static_cast<int32_t>(c.sizes.size()), c.batch,
                               c.grid, 227 * 1024, c.binarize},
                              &p);
  EXPECT_TRUE(v.ok) << v.reason;
  return p;
}

ModelState state_of(const Case& c, uint64_t seed) {
  ModelState s;
  s.params = fused_ref::he_params(c.sizes, seed);
  s.m.assign(s.params.size(), 0.0f);
  s.v.assign(s.params.size(), 0.0f);
  s.step = c.step0;
  if (c.step0 > 0) {
    Pcg32 rng(seed, 11);
    const std::vector<int64_t> off = fused_ref::layout_offsets(c.sizes);
    for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l)  // moments on real floats only
      for (int64_t i = off[2 * l]; i < off[2 * l + 1] + c.sizes[l + 1]; ++i) {
        s.m[i] = static_cast<float>(rng.normal() * 1e-3);
        s.v[i] = static_cast<float>(std::abs(rng.normal()) * 1e-6);
      }
  }
  return s;
}

// A batch whose hidden pre-activations all stay 1e-5 away from 0 (see relu_margin).
Batch safe_batch(const Case& c, const ModelState& s) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    Batch b = random_batch(seed, c.batch, c.sizes.front(), c.sizes.back());
    if (fused_test::relu_margin(c.sizes, s.params, b, c.batch, c.binarize) >= 1e-5) return b;
  }
  ADD_FAILURE() << "no batch keeps every pre-activation 1e-5 away from 0";
  return {};
}

void expect_one_step_matches(const Case& c) {
  const Plan p = plan_of(c);
  const AdamHyper h;
  const ModelState before = state_of(c, 3);
  const Batch b = safe_batch(c, before);
  const fused_ref::StepResult want =
      fused_ref::cpu_step(c.sizes, c.batch, before, h, b.images, b.labels, c.binarize);
  const fused_test::Run got = fused_test::emulate(p, before, h, b);
  fused_test::expect_step_matches(p, got, want, before, h);
  EXPECT_GT(fused_test::max_abs(got.grads, 0, got.grads.size()), 0.0) << "no gradients at all";
}

TEST(FusedEmulation, OneStepMatchesCpuReferenceOnOddShapes) {
  for (const Case& c :
       {Case{{7, 13, 5, 3}, 10, 1, 0}, Case{{7, 13, 5, 3}, 10, 3, 4}, Case{{7, 13, 5, 3}, 10, 7, 0},
        Case{{7, 13, 5, 3}, 10, 132, 9}, Case{{13, 7}, 5, 4, 2}, Case{{5, 9, 4}, 3, 6, 0},
        Case{{300, 97, 33, 10}, 17, 40, 3}, Case{{7, 13, 5, 3}, 10, 5, 1, true}}) {
    SCOPED_TRACE(::testing::Message()
                 << c.sizes.size() - 1 << " layers, batch " << c.batch << ", grid " << c.grid
                 << ", step " << c.step0 << (c.binarize ? ", binarized" : ""));
    expect_one_step_matches(c);
  }
}

TEST(FusedEmulation, OneStepMatchesCpuReferenceOnMnistShapes) {
  expect_one_step_matches(Case{{784, 500, 500, 500, 10}, 100, 132, 0});
}

// ---- determinism ----------------------------------------------------------------------------

void expect_same(const fused_test::Run& a, const fused_test::Run& b, const std::string& what) {
  EXPECT_TRUE(fused_test::same_bits(a.after.params, b.after.params)) << what << ": params";
  EXPECT_TRUE(fused_test::same_bits(a.after.m, b.after.m)) << what << ": m";
  EXPECT_TRUE(fused_test::same_bits(a.after.v, b.after.v)) << what << ": v";
  EXPECT_TRUE(fused_test::same_bits(a.grads, b.grads)) << what << ": gradients";
  EXPECT_TRUE(fused_test::same_bits(a.workspace, b.workspace)) << what << ": workspace";
  EXPECT_EQ(std::memcmp(a.metrics, b.metrics, sizeof a.metrics), 0) << what << ": metrics";
}

// Any order of the blocks inside a stage gives the same bits: no tile depends on another
// tile of its stage except through a counted reduction, whichever block performs it.
TEST(FusedEmulation, BitwiseDeterministicAcrossRunsAndBlockOrders) {
  for (const Case& c : {Case{{7, 13, 5, 3}, 10, 7, 2}, Case{{300, 97, 33, 10}, 17, 40, 0},
                        Case{{784, 500, 500, 500, 10}, 100, 132, 0}}) {
    const Plan p = plan_of(c);
    const ModelState before = state_of(c, 5);
    const Batch b = random_batch(21, c.batch, c.sizes.front(), c.sizes.back());
    const fused_test::Run first = fused_test::emulate(p, before, {}, b);
    expect_same(first, fused_test::emulate(p, before, {}, b), "second run");
    expect_same(first, fused_test::emulate(p, before, {}, b, 1, {}, 0x5eed), "shuffled blocks");
    const int32_t* counters = reinterpret_cast<const int32_t*>(first.workspace.data());
    for (int32_t i = 0; i < p.counter_count; ++i) EXPECT_EQ(counters[i], 0) << "counter " << i;
  }
}

// Three steps in one launch (batch rows gathered by index) equal three launches of one step
// on the gathered batches, bit for bit, and follow the reference's losses.
TEST(FusedEmulation, StepsInOneLaunchEqualOneLaunchPerStep) {
  const Case c{{7, 13, 5, 3}, 10, 7, 0};
  const Plan p = plan_of(c);
  const int64_t steps = 3, pool = 40;
  const Batch data = random_batch(8, pool, c.sizes.front(), c.sizes.back());
  std::vector<int32_t> idx;
  Pcg32 rng(4, 4);
  for (int64_t i = 0; i < steps * c.batch; ++i)
    idx.push_back(static_cast<int32_t>(rng.below(static_cast<uint32_t>(pool))));
  const ModelState s0 = state_of(c, 6);
  const fused_test::Run launch = fused_test::emulate(p, s0, {}, data, steps, idx);
  ModelState s = s0, ref = s0;
  double loss = 0.0, ref_loss = 0.0;
  for (int64_t k = 0; k < steps; ++k) {
    Batch bk;
    for (int64_t r = 0; r < c.batch; ++r) {
      const int32_t row = idx[k * c.batch + r];
      bk.images.insert(bk.images.end(), data.images.begin() + row * c.sizes[0],
                       data.images.begin() + (row + 1) * c.sizes[0]);
      bk.labels.push_back(data.labels[row]);
    }
    const fused_test::Run one = fused_test::emulate(p, s, {}, bk);
    s = one.after;
    loss += one.metrics[0];
    const fused_ref::StepResult r =
        fused_ref::cpu_step(c.sizes, c.batch, ref, {}, bk.images, bk.labels, false);
    ref = r.after;
    ref_loss += r.loss_sum;
    EXPECT_TRUE(std::abs(one.metrics[0] - r.loss_sum) <= 1e-4 + 1e-5 * std::abs(r.loss_sum))
        << "step " << k + 1;
  }
  EXPECT_TRUE(fused_test::same_bits(launch.after.params, s.params));
  EXPECT_TRUE(fused_test::same_bits(launch.after.m, s.m));
  EXPECT_TRUE(fused_test::same_bits(launch.after.v, s.v));
  EXPECT_EQ(launch.after.step, steps);
  EXPECT_EQ(launch.metrics[0], loss) << "the same additions in the same order";
  EXPECT_TRUE(std::abs(loss - ref_loss) <= 1e-4 + 1e-5 * std::abs(ref_loss));
}

// ---- the forward-only (evaluation) plan -----------------------------------------------

// eval --engine fused: the forward stages and the loss only. Its logits and metrics follow the
// reference's forward within tolerance, and it reads nothing of Adam (null m, v, state) and
// writes no parameter.
TEST(FusedEmulation, ForwardOnlyPlanMatchesTheReferenceForward) {
  for (const Case& c :
       {Case{{7, 13, 5, 3}, 10, 7, 0}, Case{{300, 97, 33, 10}, 17, 40, 0},
        Case{{784, 500, 500, 500, 10}, 100, 132, 0}, Case{{784, 64, 10}, 1000, 132, 0}}) {
    SCOPED_TRACE(::testing::Message() << c.sizes.size() - 1 << " layers, batch " << c.batch);
    PlanRequest q{c.sizes.data(), static_cast<int32_t>(c.sizes.size()), c.batch, c.grid, 227 * 1024,
                  false};
    q.forward_only = true;
    Plan p{};
    const Verdict v = make_plan(q, &p);
    ASSERT_TRUE(v.ok) << v.reason;
    EXPECT_EQ(p.stage_count, p.layers) << "forward stages only";
    const ModelState before = state_of(c, 9);
    // No ReLU-margin search: in a forward pass a pre-activation within rounding of 0 moves
    // the logits by about that rounding, well inside the tolerance.
    const Batch b = random_batch(31, c.batch, c.sizes.front(), c.sizes.back());
    const fused_ref::StepResult want =
        fused_ref::cpu_step(c.sizes, c.batch, before, {}, b.images, b.labels, false);
    std::vector<float> params = before.params;
    std::vector<float> work(static_cast<std::size_t>(workspace_bytes(p) / 4), 0.0f);
    double metrics[2] = {0, 0};
    const StepArgs a{b.images.data(), b.labels.data(), nullptr, 1,           params.data(), nullptr,
                     nullptr,         nullptr,         metrics, work.data(), nullptr};
    emulate_steps(p, a);
    EXPECT_TRUE(fused_test::same_bits(params, before.params)) << "parameters untouched";
    const LayerPlan& last = p.layer[p.layers - 1];
    const float* lg = work.data() + p.counter_floats + last.act_off;
    const std::vector<float> logits(lg, lg + int64_t{p.batch} * last.fan_out);
    EXPECT_TRUE(fused_test::close(logits, want.logits, 0, want.logits.size(),
                                  1e-5 * fused_test::max_abs(want.logits, 0, want.logits.size()),
                                  1e-4));
    EXPECT_TRUE(std::abs(metrics[0] - want.loss_sum) <= 1e-4 + 1e-5 * std::abs(want.loss_sum))
        << metrics[0] << " vs " << want.loss_sum;
    EXPECT_EQ(metrics[1], want.correct);
  }
}

// A forward-only plan needs no dX tiles and no batch x (k + n) dW panel pair, so it needs no
// more shared memory than the training plan, and it fits eval's default batch of 1000 at the
// MNIST shape, where the training plan is refused.
TEST(FusedEmulation, ForwardOnlyPlanFitsWhereTrainingDoesNot) {
  const std::vector<int64_t> sizes{784, 500, 500, 500, 10};
  for (int64_t batch : {1, 100}) {
    Plan train{}, eval{};
    PlanRequest q{sizes.data(), 5, batch, 132, 227 * 1024, false};
    ASSERT_TRUE(make_plan(q, &train).ok);
    q.forward_only = true;
    ASSERT_TRUE(make_plan(q, &eval).ok);
    EXPECT_LE(eval.smem_floats, train.smem_floats) << "batch " << batch;
    EXPECT_EQ(eval.forward_only, 1);
    EXPECT_EQ(train.forward_only, 0);
  }
  Plan p{};
  PlanRequest q{sizes.data(), 5, 1000, 132, 227 * 1024, false};
  const Verdict refused = make_plan(q, &p);
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(std::string(refused.reason).find("shared memory"), std::string::npos) << refused.reason;
  q.forward_only = true;
  const Verdict v = make_plan(q, &p);
  EXPECT_TRUE(v.ok) << v.reason;
}

}  // namespace
}  // namespace mlp::fused
