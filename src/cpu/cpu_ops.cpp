// CPU reference implementations of the Backend ops. Deliberately plain: each
// loop reads like the formula it computes; the GEMMs (cpu_gemm.cpp) go to
// oneDNN or OpenBLAS. Results do not depend on the pool size: every task owns a
// disjoint block of the output.
#include "cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>

#include "cpu/vector_width.h"

namespace mlp::cpu {
namespace {

// The loops themselves, each built for every vector width (vector_width.h):
// every element is one exact operation, so all widths give the same bits.
MLP_VECTOR_BODY void u8_to_float_loop(const uint8_t* __restrict in, float* __restrict out,
                                      int64_t begin, int64_t end, bool binarize) {
  if (binarize) {
    for (int64_t i = begin; i < end; ++i) out[i] = in[i] > 127 ? 1.0f : 0.0f;
  } else {
    for (int64_t i = begin; i < end; ++i) out[i] = static_cast<float>(in[i]) * (1.0f / 255.0f);
  }
}
MLP_VECTOR_VARIANTS(u8_to_float_range, u8_to_float_loop,
                    (const uint8_t* __restrict in, float* __restrict out, int64_t begin,
                     int64_t end, bool binarize),
                    (in, out, begin, end, binarize))

MLP_VECTOR_BODY void bias_act_loop(float* __restrict z, int64_t ld, const float* __restrict bias,
                                   bool relu, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* row = z + r * ld;
    if (relu) {
      for (int64_t c = c0; c < c1; ++c) {
        const float x = row[c] + bias[c];
        row[c] = x <= 0.0f ? 0.0f : x;  // NaN passes through so the loss sees it
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) row[c] += bias[c];
    }
  }
}
MLP_VECTOR_VARIANTS(bias_act_rows, bias_act_loop,
                    (float* __restrict z, int64_t ld, const float* __restrict bias, bool relu,
                     int64_t r0, int64_t r1, int64_t c0, int64_t c1),
                    (z, ld, bias, relu, r0, r1, c0, c1))

MLP_VECTOR_BODY void relu_mask_loop(float* __restrict g, const float* __restrict a, int64_t begin,
                                    int64_t end) {
  for (int64_t i = begin; i < end; ++i) g[i] = a[i] > 0.0f ? g[i] : 0.0f;
}
MLP_VECTOR_VARIANTS(relu_mask_range, relu_mask_loop,
                    (float* __restrict g, const float* __restrict a, int64_t begin, int64_t end),
                    (g, a, begin, end))

// db: the column sums of grad (rows, cols), the rows added in order from 0.0f
// (rows outer, so the inner loop is contiguous and vectorizes over columns).
MLP_VECTOR_BODY void column_sums_loop(const float* __restrict grad, int64_t rows, int64_t cols,
                                      float* __restrict db) {
  for (int64_t c = 0; c < cols; ++c) db[c] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = grad + r * cols;
    for (int64_t c = 0; c < cols; ++c) db[c] += g[c];
  }
}
MLP_VECTOR_VARIANTS(column_sums, column_sums_loop,
                    (const float* __restrict grad, int64_t rows, int64_t cols,
                     float* __restrict db),
                    (grad, rows, cols, db))

}  // namespace

void u8_to_float(ThreadPool& pool, const uint8_t* in, Mat out, bool binarize) {
  // in, out: (rows, cols)
  float* o = out.data;
  pool.parallel_for(out.size(), kMinElementsPerTask, 16,
                    [&](int64_t b, int64_t e) { u8_to_float_range(in, o, b, e, binarize); });
}

void bias_act_block(Mat z, const float* bias, bool relu, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1) {
  bias_act_rows(z.data, z.cols, bias, relu, r0, r1, c0, c1);
}

void bias_relu_forward(ThreadPool& pool, Mat z, const float* bias) {
  // z: (rows, cols), bias: (cols)
  pool.parallel_for(
      z.rows, std::max<int64_t>(1, kMinElementsPerTask / z.cols), 1,
      [&](int64_t r0, int64_t r1) { bias_act_block(z, bias, true, r0, r1, 0, z.cols); });
}

void bias_forward(Mat z, const float* bias) {
  // z: (rows, cols), bias: (cols)
  bias_act_block(z, bias, false, 0, z.rows, 0, z.cols);
}

void relu_backward(ThreadPool& pool, Mat grad, CMat act) {
  // grad, act: (rows, cols); act is the ReLU output, so act > 0 exactly where z > 0
  pool.parallel_for(grad.size(), kMinElementsPerTask, 16,
                    [&](int64_t b, int64_t e) { relu_mask_range(grad.data, act.data, b, e); });
}

void bias_grad(CMat grad, float* db) {
  // grad: (rows, cols) -> db: (cols)
  column_sums(grad.data, grad.rows, grad.cols, db);
}

void softmax_xent(CMat logits, const uint8_t* labels, float* dlogits, double* metrics) {
  // logits, dlogits: (rows, classes); labels: (rows)
  const int64_t rows = logits.rows, classes = logits.cols;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits.data + r * classes;
    int64_t argmax = 0;  // first index of the maximum, as on the GPU
    for (int64_t c = 1; c < classes; ++c)
      if (x[c] > x[argmax]) argmax = c;
    const float max = x[argmax];
    // With dlogits, each exp is kept there for the gradient below: one exp per logit.
    float* d = dlogits ? dlogits + r * classes : nullptr;
    float sum = 0.0f;
    for (int64_t c = 0; c < classes; ++c) {
      const float e = std::exp(x[c] - max);
      if (d) d[c] = e;
      sum += e;
    }
    const int64_t label = labels[r];
    // -log softmax[label] = log(sum) - (x[label] - max), finite even for huge logits
    loss_sum += static_cast<double>(std::log(sum) - (x[label] - max));
    correct += (argmax == label);
    if (d) {
      const float inv_sum = 1.0f / sum;
      for (int64_t c = 0; c < classes; ++c)
        d[c] = (d[c] * inv_sum - (c == label ? 1.0f : 0.0f)) * inv_rows;
    }
  }
  metrics[kMetricLossSum] += loss_sum;
  metrics[kMetricCorrect] += static_cast<double>(correct);
}

namespace {

// The Adam loop over [begin, end). Only IEEE-exact operations (+ - * / sqrt)
// and the whole library is compiled with -ffp-contract=off, so no variant fuses
// a*b+c into an FMA: every vector width gives the same bits (tested), and they
// equal the CUDA kernel's __fmul_rn/__fadd_rn arithmetic.
MLP_VECTOR_BODY void adam_loop(float* __restrict params, const float* __restrict grads,
                               float* __restrict m, float* __restrict v, int64_t begin, int64_t end,
                               float b1, float b2, float step_size, float inv_sqrt_bc2, float eps) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = grads[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= step_size * mi / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}
MLP_VECTOR_VARIANTS(adam_range, adam_loop,
                    (float* __restrict params, const float* __restrict grads, float* __restrict m,
                     float* __restrict v, int64_t begin, int64_t end, float b1, float b2,
                     float step_size, float inv_sqrt_bc2, float eps),
                    (params, grads, m, v, begin, end, b1, b2, step_size, inv_sqrt_bc2, eps))

}  // namespace

void adam_step(ThreadPool& pool, float* params, const float* grads, float* m, float* v, int64_t n,
               OptimizerState* state) {
  // PyTorch's form of Adam with bias correction (mlp/optimizer.h):
  //   p -= step_size(t) * m / (sqrt(v) * inv_sqrt_bc2(t) + eps)
  // adam_factors computes both scalars in double and rounds once, exactly as
  // the CUDA kernel does, so both backends apply bit-identical factors.
  const int64_t t = ++state->step;
  const AdamFactors f = adam_factors(*state, t);
  const AdamHyper h = state->adam;
  pool.parallel_for(n, kMinElementsPerTask, 16, [&](int64_t begin, int64_t end) {
    adam_range(params, grads, m, v, begin, end, h.beta1, h.beta2, f.step_size, f.inv_sqrt_bc2,
               h.eps);
  });
}

}  // namespace mlp::cpu
