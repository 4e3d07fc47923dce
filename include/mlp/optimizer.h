// Adam and its learning-rate schedule: the hyperparameters a user sets, and the
// state that lives in backend memory beside the step counter. The Adam op reads
// OptimizerState at run time (on the GPU from device memory, inside the replayed
// graph), so a schedule advances without a new capture and the CPU and the GPU
// can never hold two different learning rates. Plain structs and inline
// host/device functions: kernels/ and the CPU reference compute the same factors
// from the same code.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define MLP_HOST_DEVICE __host__ __device__
#else
#define MLP_HOST_DEVICE
#endif

namespace mlp {

struct AdamHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};

enum class LrScheduleKind : int32_t { kConstant = 0, kStep = 1, kCosine = 2 };

// The learning rate of Adam step t (1-based), with k = t - 1 steps done before it:
//   warm-up, k < warmup_steps:  lr * (k + 1) / warmup_steps
//   then, with s = k - warmup_steps:
//     constant: lr
//     step:     lr * gamma^floor(s / step_size)                       (PyTorch's StepLR)
//     cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * s / T)) / 2,   (CosineAnnealingLR)
//               T = total_steps - warmup_steps, s held at T after the end
// All counts are optimizer steps; the CLI converts epochs to steps.
struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  float gamma = 0.1f;        // kStep: factor per decay
  int64_t step_size = 0;     // kStep: steps between decays (> 0)
  int64_t warmup_steps = 0;  // linear warm-up, any kind
  int64_t total_steps = 0;   // kCosine: the run's length in steps
  float min_lr = 0.0f;       // kCosine: the floor
  int32_t reserved = 0;
};

// Lives in backend memory (Model owns it). The Adam op first increments step,
// then updates with t = step.
struct OptimizerState {
  int64_t step = 0;
  AdamHyper adam;
  LrSchedule schedule;
};

MLP_HOST_DEVICE inline double scheduled_lr(const AdamHyper& h, const LrSchedule& s, int64_t t) {
  const double lr = static_cast<double>(h.lr);
  const int64_t k = t > 0 ? t - 1 : 0;
  if (k < s.warmup_steps)
    return lr * static_cast<double>(k + 1) / static_cast<double>(s.warmup_steps);
  const int64_t since = k - s.warmup_steps;
  switch (s.kind) {
    case LrScheduleKind::kStep: {
      const int64_t decays = s.step_size > 0 ? since / s.step_size : 0;
      return lr * ::pow(static_cast<double>(s.gamma), static_cast<double>(decays));
    }
    case LrScheduleKind::kCosine: {
      const int64_t span = s.total_steps - s.warmup_steps;
      if (span <= 0) return lr;
      const double frac =
          static_cast<double>(since < span ? since : span) / static_cast<double>(span);
      const double floor = static_cast<double>(s.min_lr);
      return floor + (lr - floor) * 0.5 * (1.0 + ::cos(3.14159265358979323846 * frac));
    }
    case LrScheduleKind::kConstant:
    default:
      return lr;
  }
}

// PyTorch's form of Adam with bias correction at step t:
//   p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
//   step_size = lr(t) / (1 - beta1^t),  inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t)
// Both factors are computed in double and rounded to float once, on the CPU and
// on the GPU alike, so the two backends apply the same factors.
struct AdamFactors {
  float step_size;
  float inv_sqrt_bc2;
};

MLP_HOST_DEVICE inline AdamFactors adam_factors(const OptimizerState& st, int64_t t) {
  const double td = static_cast<double>(t);
  const double bc1 = 1.0 - ::pow(static_cast<double>(st.adam.beta1), td);
  const double bc2 = 1.0 - ::pow(static_cast<double>(st.adam.beta2), td);
  AdamFactors f;
  f.step_size = static_cast<float>(scheduled_lr(st.adam, st.schedule, t) / bc1);
  f.inv_sqrt_bc2 = static_cast<float>(1.0 / ::sqrt(bc2));
  return f;
}

}  // namespace mlp
