// The fused engine's element recipes, shared by the GPU kernel (kernels/fused_step.cu) and its
// CPU emulation (src/fused/): every rounding step is spelled out (mul_rn, add_rn, fma_rn, ...),
// so nvcc cannot contract a*b+c behind our back and both sides produce the same bits.
// Invariant: a recipe here matches the CPU reference op (src/cpu/cpu_ops.cpp) operation for
// operation, except exp_f/log_f, which replace libm's expf/logf (within 2 ulp, see the tests).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mlp/optimizer.h"  // defines: MLP_HOST_DEVICE, OptimizerState, adam_factors

namespace mlp::fused {

// ---- IEEE round-to-nearest operations, one rounding each ----------------------------------
// The host build is ISO C++ (no -ffp-contract=fast), so plain operators round once there.
#if defined(__CUDA_ARCH__)
MLP_HOST_DEVICE inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
MLP_HOST_DEVICE inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
MLP_HOST_DEVICE inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
MLP_HOST_DEVICE inline float div_rn(float a, float b) { return __fdiv_rn(a, b); }
MLP_HOST_DEVICE inline float sqrt_rn(float a) { return __fsqrt_rn(a); }
MLP_HOST_DEVICE inline float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
MLP_HOST_DEVICE inline uint32_t float_bits(float x) { return __float_as_uint(x); }
MLP_HOST_DEVICE inline float bits_float(uint32_t u) { return __uint_as_float(u); }
// Data another block wrote during this launch: read through L2 (never the non-coherent path).
MLP_HOST_DEVICE inline float load_coherent(const float* p) { return __ldcg(p); }
#else
inline float mul_rn(float a, float b) { return a * b; }
inline float add_rn(float a, float b) { return a + b; }
inline float sub_rn(float a, float b) { return a - b; }
inline float div_rn(float a, float b) { return a / b; }
inline float sqrt_rn(float a) { return ::sqrtf(a); }
inline float fma_rn(float a, float b, float c) { return ::fmaf(a, b, c); }  // correctly rounded
inline uint32_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
inline float load_coherent(const float* p) { return *p; }
#endif

// 2^n for n in [-126, 127], exactly.
MLP_HOST_DEVICE inline float pow2_f(int n) {
  return bits_float(static_cast<uint32_t>(n + 127) << 23);
}

// e^x: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, a degree-7 Taylor polynomial in Horner
// form with fma, then scaling by 2^k in two exact-or-once-rounded steps (k may reach +-150).
MLP_HOST_DEVICE inline float exp_f(float x) {
  if (!(x == x)) return x;
  if (x > 88.72283935546875f) return bits_float(0x7f800000u);  // +inf
  if (x < -103.972084045410156f) return 0.0f;
  const float k = rintf(mul_rn(x, 1.44269502162933349609f));
  float r = fma_rn(k, -0.693145751953125f, x);  // ln2 high part: k * it is exact
  r = fma_rn(k, -1.428606765330187045e-06f, r);
  float p = 1.98412698e-4f;  // 1/7!
  p = fma_rn(p, r, 1.38888889e-3f);
  p = fma_rn(p, r, 8.33333333e-3f);
  p = fma_rn(p, r, 4.16666667e-2f);
  p = fma_rn(p, r, 1.66666667e-1f);
  p = fma_rn(p, r, 0.5f);
  p = fma_rn(p, r, 1.0f);
  p = fma_rn(p, r, 1.0f);
  const int ki = static_cast<int>(k), k1 = ki / 2, k2 = ki - k1;
  return mul_rn(mul_rn(p, pow2_f(k1)), pow2_f(k2));
}

// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m-1)/(m+1).
MLP_HOST_DEVICE inline float log_f(float x) {
  if (!(x == x) || x < 0.0f) return bits_float(0x7fc00000u);  // NaN
  if (x == 0.0f) return bits_float(0xff800000u);              // -inf
  if (x == bits_float(0x7f800000u)) return x;
  int e = 0;
  if (x < 1.17549435e-38f) {  // subnormal: scale into the normal range first
    x = mul_rn(x, 8388608.0f);
    e = -23;
  }
  const uint32_t u = float_bits(x);
  e += static_cast<int>((u >> 23) & 0xffu) - 127;
  float m = bits_float((u & 0x007fffffu) | 0x3f800000u);
  if (m > 1.41421356f) {
    m = mul_rn(m, 0.5f);
    e += 1;
  }
  const float f = sub_rn(m, 1.0f);  // exact (Sterbenz)
  const float s = div_rn(f, add_rn(2.0f, f));
  const float s2 = mul_rn(s, s);
  float q = 0.111111111f;  // 1/9
  q = fma_rn(q, s2, 0.142857143f);
  q = fma_rn(q, s2, 0.2f);
  q = fma_rn(q, s2, 0.333333333f);
  const float two_s = add_rn(s, s);
  const float log_m = fma_rn(mul_rn(two_s, s2), q, two_s);
  const float ef = static_cast<float>(e);
  return fma_rn(ef, 0.693145751953125f, fma_rn(ef, 1.428606765330187045e-06f, log_m));
}

// ---- the network's element operations (cpu_ops.cpp, in the same order) ---------------------

// u8_to_float: x / 255 as x * (1/255), or the binarised pixel.
MLP_HOST_DEVICE inline float input_value(uint8_t x, bool binarize) {
  if (binarize) return x > 127 ? 1.0f : 0.0f;
  return mul_rn(static_cast<float>(x), 1.0f / 255.0f);
}

// Forward partial sums of one output element: slot 0, then + slot 1, ..., in slot order.
MLP_HOST_DEVICE inline float sum_slots(const float* slot0, int64_t slot_stride, int slots) {
  float s = load_coherent(slot0);
  for (int i = 1; i < slots; ++i) s = add_rn(s, load_coherent(slot0 + i * slot_stride));
  return s;
}

// bias_relu_forward / bias_forward on the finished GEMM sum. ReLU passes NaN on.
MLP_HOST_DEVICE inline float forward_output(float sum, float bias, bool relu) {
  const float z = add_rn(sum, bias);
  if (!relu) return z;
  return z <= 0.0f ? 0.0f : z;
}

// relu_backward: the gradient survives where the ReLU output is positive.
MLP_HOST_DEVICE inline float dx_output(float sum, float act) { return act > 0.0f ? sum : 0.0f; }

// softmax_xent for one row: returns the row loss log(sum) - (x[label] - max) (NaN when the
// label is out of range), sets *correct, and writes (softmax - onehot) * inv_rows into d when
// d is non-null. Argmax is the FIRST maximum; the exp sum runs over the classes in order.
MLP_HOST_DEVICE inline float softmax_xent_row(const float* x, int classes, int label,
                                              float inv_rows, float* d, int* correct) {
  int argmax = 0;
  for (int c = 1; c < classes; ++c)
    if (x[c] > x[argmax]) argmax = c;
  const float mx = x[argmax];
  float sum = 0.0f;
  for (int c = 0; c < classes; ++c) sum = add_rn(sum, exp_f(sub_rn(x[c], mx)));
  const bool label_ok = label >= 0 && label < classes;
  *correct = label_ok && argmax == label ? 1 : 0;
  if (d) {
    const float inv_sum = div_rn(1.0f, sum);
    for (int c = 0; c < classes; ++c)
      d[c] = mul_rn(sub_rn(mul_rn(exp_f(sub_rn(x[c], mx)), inv_sum), c == label ? 1.0f : 0.0f),
                    inv_rows);
  }
  return label_ok ? sub_rn(log_f(sum), sub_rn(x[label], mx)) : bits_float(0x7fc00000u);
}

// Adam's per-step scalars, from adam_factors() (the one definition of the bias corrections).
struct AdamScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, step_size, inv_sqrt_bc2;
};

MLP_HOST_DEVICE inline AdamScalars adam_scalars(const OptimizerState& st, int64_t t) {
  const AdamFactors f = adam_factors(st, t);
  return {st.adam.beta1,
          st.adam.beta2,
          sub_rn(1.0f, st.adam.beta1),
          sub_rn(1.0f, st.adam.beta2),
          st.adam.eps,
          f.step_size,
          f.inv_sqrt_bc2};
}

// adam_range's loop body: m = b1 m + (1-b1) g; v = b2 v + ((1-b2) g) g;
// p -= (step_size m) / (sqrt(v) inv_sqrt_bc2 + eps).
MLP_HOST_DEVICE inline void adam_element(float* p, float* m, float* v, float g,
                                         const AdamScalars& a) {
  const float mi = add_rn(mul_rn(a.beta1, *m), mul_rn(a.one_minus_beta1, g));
  const float vi = add_rn(mul_rn(a.beta2, *v), mul_rn(mul_rn(a.one_minus_beta2, g), g));
  *m = mi;
  *v = vi;
  *p = sub_rn(*p,
              div_rn(mul_rn(a.step_size, mi), add_rn(mul_rn(sqrt_rn(vi), a.inv_sqrt_bc2), a.eps)));
}

}  // namespace mlp::fused
