// CPU reference implementations of the Backend ops. Deliberately plain: each
// loop reads like the formula it computes; the GEMMs go to CBLAS.
#include "cpu/cpu_ops.h"

#include <cblas.h>

#include <cmath>

namespace mlp::cpu {

void gemm(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) {
  // c: (m, n) = op(a): (m, k) * op(b): (k, n)
  const auto m = static_cast<int>(c.rows);
  const auto n = static_cast<int>(c.cols);
  const auto k = static_cast<int>(ta == Trans::kNo ? a.cols : a.rows);
  cblas_sgemm(CblasRowMajor, ta == Trans::kNo ? CblasNoTrans : CblasTrans,
              tb == Trans::kNo ? CblasNoTrans : CblasTrans, m, n, k, alpha, a.data,
              static_cast<int>(a.cols), b.data, static_cast<int>(b.cols), beta, c.data,
              static_cast<int>(c.cols));
}

void u8_to_float(const uint8_t* in, Mat out, bool binarize, int threads) {
  // in, out: (rows, cols)
  const int64_t n = out.size();
  float* o = out.data;
  if (binarize) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) o[i] = in[i] > 127 ? 1.0f : 0.0f;
  } else {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(in[i]) * (1.0f / 255.0f);
  }
}

void bias_relu_forward(Mat z, const float* bias, int threads) {
  // z: (rows, cols), bias: (cols)
  const int64_t rows = z.rows, cols = z.cols;
#pragma omp parallel for num_threads(threads) schedule(static) if (z.size() >= kParallelThreshold)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = z.data + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float x = row[c] + bias[c];
      row[c] = x > 0.0f ? x : 0.0f;
    }
  }
}

void bias_forward(Mat z, const float* bias) {
  // z: (rows, cols), bias: (cols)
  for (int64_t r = 0; r < z.rows; ++r) {
    float* row = z.data + r * z.cols;
    for (int64_t c = 0; c < z.cols; ++c) row[c] += bias[c];
  }
}

void relu_backward(Mat grad, CMat act, int threads) {
  // grad, act: (rows, cols); act is the ReLU output, so act > 0 exactly where z > 0
  const int64_t n = grad.size();
  float* g = grad.data;
  const float* a = act.data;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) g[i] = a[i] > 0.0f ? g[i] : 0.0f;
}

void bias_grad(CMat grad, float* db) {
  // grad: (rows, cols) -> db: (cols); rows outer so the inner loop is contiguous
  for (int64_t c = 0; c < grad.cols; ++c) db[c] = 0.0f;
  for (int64_t r = 0; r < grad.rows; ++r) {
    const float* row = grad.data + r * grad.cols;
    for (int64_t c = 0; c < grad.cols; ++c) db[c] += row[c];
  }
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
    float sum = 0.0f;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(x[c] - max);
    const int64_t label = labels[r];
    // -log softmax[label] = log(sum) - (x[label] - max), finite even for huge logits
    loss_sum += static_cast<double>(std::log(sum) - (x[label] - max));
    correct += (argmax == label);
    if (dlogits) {
      float* d = dlogits + r * classes;
      const float inv_sum = 1.0f / sum;
      for (int64_t c = 0; c < classes; ++c)
        d[c] = (std::exp(x[c] - max) * inv_sum - (c == label ? 1.0f : 0.0f)) * inv_rows;
    }
  }
  metrics[kMetricLossSum] += loss_sum;
  metrics[kMetricCorrect] += static_cast<double>(correct);
}

void adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamHyper& h, int64_t* step, int threads) {
  const int64_t t = ++*step;
  // Bias corrections in double, then rounded once: the CUDA kernel does the same,
  // so both backends apply bit-identical scale factors.
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta2), t));
  const float b1 = h.beta1, b2 = h.beta2, lr = h.lr, eps = h.eps;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grads[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= lr * (mi / bc1) / (std::sqrt(vi / bc2) + eps);
  }
}

}  // namespace mlp::cpu
