// Helpers shared by the fused engine's CPU and GPU tests: random batches, a float64 forward
// for the ReLU margin, the emulation behind plain vectors, and the project's tolerance formula
//     |got - want| <= atol + rtol * |want|      (false for NaN or Inf: `!(err <= tol)` fails)
// with the per-tensor tolerances of tests/cuda/test_cuda_training.cpp. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fused/fused_emulation.h"
#include "fused_reference.h"
#include "mlp/fused_schedule.h"
#include "mlp/rng.h"

namespace mlp::fused_test {

using fused::Plan;

struct Batch {
  std::vector<uint8_t> images, labels;
};

inline Batch random_batch(uint64_t seed, int64_t rows, int64_t inputs, int64_t classes) {
  Pcg32 rng(seed, 3);
  Batch b;
  b.images.resize(static_cast<std::size_t>(rows * inputs));
  for (auto& x : b.images) x = static_cast<uint8_t>(rng.below(256));
  for (int64_t i = 0; i < rows; ++i)
    b.labels.push_back(static_cast<uint8_t>(rng.below(static_cast<uint32_t>(classes))));
  return b;
}

// Smallest |pre-activation| over the hidden layers, in float64. A value within rounding
// distance of 0 can fall on different sides of the ReLU in two summation orders, which
// legitimately changes a whole gradient column; tests pick batches that rule that out.
inline double relu_margin(const std::vector<int64_t>& sizes, const std::vector<float>& params,
                          const Batch& b, int64_t rows, bool binarize = false) {
  const std::vector<int64_t> off = fused_ref::layout_offsets(sizes);
  std::vector<double> a(b.images.begin(), b.images.end());
  for (double& x : a)
    x = binarize ? (x > 127 ? 1.0 : 0.0)
                 : static_cast<double>(static_cast<float>(x) * (1.0f / 255.0f));
  double margin = INFINITY;
  for (std::size_t l = 0; l + 2 < sizes.size(); ++l) {
    const int64_t K = sizes[l], N = sizes[l + 1];
    std::vector<double> z(static_cast<std::size_t>(rows * N));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t n = 0; n < N; ++n) {
        double s = params[off[2 * l + 1] + n];
        for (int64_t k = 0; k < K; ++k) s += a[r * K + k] * params[off[2 * l] + k * N + n];
        margin = std::min(margin, std::abs(s));
        z[r * N + n] = s > 0 ? s : 0;
      }
    a = std::move(z);
  }
  return margin;
}

struct Run {
  ModelState after;
  std::vector<float> grads, logits;
  std::vector<float> workspace;
  double metrics[2] = {0, 0};
};

// `steps` steps of the emulation in one "launch"; indices may be empty (row s * batch + r).
inline Run emulate(const Plan& p, const ModelState& before, const AdamHyper& h, const Batch& data,
                   int64_t steps = 1, const std::vector<int32_t>& indices = {},
                   uint64_t block_order_seed = 0) {
  Run r;
  r.after = before;
  r.grads.assign(before.params.size(), 0.0f);
  r.workspace.assign(static_cast<std::size_t>(fused::workspace_bytes(p) / 4), 0.0f);
  OptimizerState st;
  st.step = before.step;
  st.adam = h;
  const fused::StepArgs a{data.images.data(),
                          data.labels.data(),
                          indices.empty() ? nullptr : indices.data(),
                          steps,
                          r.after.params.data(),
                          r.after.m.data(),
                          r.after.v.data(),
                          &st,
                          r.metrics,
                          r.workspace.data(),
                          r.grads.data()};
  fused::emulate_steps(p, a, fused::EmulationOptions{block_order_seed});
  r.after.step = st.step;
  const fused::LayerPlan& last = p.layer[p.layers - 1];
  const float* logits = r.workspace.data() + p.counter_floats + last.act_off;
  r.logits.assign(logits, logits + int64_t{p.batch} * last.fan_out);
  return r;
}

inline double max_abs(const std::vector<float>& v, std::size_t begin, std::size_t end) {
  double m = 0.0;
  for (std::size_t i = begin; i < end; ++i) m = std::max(m, std::abs(static_cast<double>(v[i])));
  return m;
}

// got[i] vs want[i] for i in [begin, end) with atol[i - begin] (or atol0 when atol is empty).
inline ::testing::AssertionResult close(const std::vector<float>& got,
                                        const std::vector<float>& want, std::size_t begin,
                                        std::size_t end, double atol0, double rtol,
                                        const std::vector<double>& atol = {}) {
  std::size_t bad = 0, first = 0;
  for (std::size_t i = begin; i < end; ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    const double tol = (atol.empty() ? atol0 : atol[i - begin]) + rtol * std::abs(want[i]);
    if (!(err <= tol) && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << end - begin << " out of tolerance; "
         << "first at " << first << ": got " << got[first] << ", want " << want[first];
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Compares a fused step with the CPU reference, tensor by tensor (weights and biases apart):
//   loss sum atol 1e-4 rtol 1e-5, correct exact; logits and each gradient tensor T:
//   atol 1e-5 max|T|, rtol 1e-4; m, v, params: the reference's Adam step moved by at most the
//   gradient tolerance gtol, evaluated in float64 at g +- gtol (+1e-9 absolute, rtol 1e-6).
inline void expect_step_matches(const Plan& p, const Run& got, const fused_ref::StepResult& want,
                                const ModelState& before, const AdamHyper& h) {
  EXPECT_TRUE(std::abs(got.metrics[0] - want.loss_sum) <= 1e-4 + 1e-5 * std::abs(want.loss_sum))
      << "loss sum " << got.metrics[0] << " vs " << want.loss_sum;
  EXPECT_EQ(got.metrics[1], want.correct);
  EXPECT_EQ(got.after.step, want.after.step);
  EXPECT_TRUE(close(got.logits, want.logits, 0, want.logits.size(),
                    1e-5 * max_abs(want.logits, 0, want.logits.size()), 1e-4))
      << "logits";
  const double t = static_cast<double>(want.after.step);
  const double bc1 = 1 - std::pow(static_cast<double>(h.beta1), t);
  const double bc2 = 1 - std::pow(static_cast<double>(h.beta2), t);
  for (int32_t l = 0; l < p.layers; ++l)
    for (bool bias : {false, true}) {
      const fused::LayerPlan& lp = p.layer[l];
      const auto b = static_cast<std::size_t>(bias ? lp.b_off : lp.w_off);
      const std::size_t e = b + (bias ? lp.fan_out : int64_t{lp.fan_in} * lp.fan_out);
      const std::string what = (bias ? "b" : "W") + std::to_string(l);
      const double gabs = 1e-5 * max_abs(want.grads, b, e), grel = 1e-4;
      EXPECT_TRUE(close(got.grads, want.grads, b, e, gabs, grel)) << "gradient " << what;
      std::vector<double> tm, tv, tp;
      for (std::size_t i = b; i < e; ++i) {
        const double g = want.grads[i], gt = gabs + grel * std::abs(g);
        const double m0 = before.m[i], v0 = before.v[i];
        const auto mv = [&](double x, double* m, double* v) {
          *m = h.beta1 * m0 + (1 - h.beta1) * x;
          *v = h.beta2 * v0 + (1 - h.beta2) * x * x;
        };
        const auto upd = [&](double x) {
          double m, v;
          mv(x, &m, &v);
          return h.lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + h.eps);
        };
        double m1, v1, m2, v2, m3, v3;
        mv(g, &m1, &v1);
        mv(g + gt, &m2, &v2);
        mv(g - gt, &m3, &v3);
        tm.push_back(std::max(std::abs(m2 - m1), std::abs(m3 - m1)) + 1e-12);
        tv.push_back(std::max(std::abs(v2 - v1), std::abs(v3 - v1)) + 1e-15);
        tp.push_back(std::max(std::abs(upd(g + gt) - upd(g)), std::abs(upd(g - gt) - upd(g))) +
                     1e-9);
      }
      EXPECT_TRUE(close(got.after.m, want.after.m, b, e, 0, 1e-6, tm)) << "m " << what;
      EXPECT_TRUE(close(got.after.v, want.after.v, b, e, 0, 1e-6, tv)) << "v " << what;
      EXPECT_TRUE(close(got.after.params, want.after.params, b, e, 0, 1e-6, tp))
          << "params " << what;
    }
}

}  // namespace mlp::fused_test
