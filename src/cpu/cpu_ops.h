// The CPU reference ops: plain loops (OpenMP-threaded where a loop is large
// enough to pay) plus CBLAS sgemm. Same names and semantics as the Backend
// ops (see include/mlp/backend.h); free functions so that tests and
// microbenchmarks can call them without a Backend object.
#pragma once

#include <cstdint>

#include "mlp/backend.h"

namespace mlp::cpu {

// Elementwise loops below this many elements run on one thread: spawning the
// team costs more than the work (measured with bench/cpu_ops_bench).
inline constexpr int64_t kParallelThreshold = 1 << 15;

void gemm(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c);
void u8_to_float(const uint8_t* in, Mat out, bool binarize, int threads);
void bias_relu_forward(Mat z, const float* bias, int threads);
void bias_forward(Mat z, const float* bias);
void relu_backward(Mat grad, CMat act, int threads);
void bias_grad(CMat grad, float* db);
void softmax_xent(CMat logits, const uint8_t* labels, float* dlogits, double* metrics);
void adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamHyper& h, int64_t* step, int threads);

}  // namespace mlp::cpu
