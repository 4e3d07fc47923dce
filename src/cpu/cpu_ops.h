// The CPU reference ops: plain loops split across a ThreadPool, plus sgemm
// from oneDNN or OpenBLAS (either held to one thread per call; the pool splits
// each GEMM by output rows or columns instead, see cpu_gemm.cpp). Same names and semantics as the
// Backend ops (see include/mlp/backend.h); free functions so tests and microbenchmarks can call
// them without a Backend. A pool of size 1 runs everything inline.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "cpu/scoped_flag.h"
#include "cpu/thread_pool.h"
#include "mlp/backend.h"

namespace mlp::cpu {

// Below these sizes an op runs on the calling thread alone: waking the pool
// costs a few microseconds, more than the work it would share.
inline constexpr int64_t kMinElementsPerTask = 1 << 14;
inline constexpr int64_t kMinGemmFlopsPerTask = int64_t{1} << 21;
// How one GEMM is split (see cpu_gemm.cpp: fixed by the shape): into at most
// kGemmBlocks blocks of at least kMinGemmRows rows, or, for fewer rows, into
// at most kGemmColumnBlocks blocks of columns.
inline constexpr int64_t kGemmBlocks = 16;
inline constexpr int64_t kMinGemmRows = 48;
inline constexpr int64_t kGemmColumnBlocks = 4;

// While one is alive, gemm() on this thread runs every GEMM whole, as one
// single-threaded library call, never split into blocks: for two independent
// GEMMs run side by side, one per core (CpuBackend::run_side_by_side_impl).
class WholeGemms {
 public:
  WholeGemms();

 private:
  ScopedFlag on_;
};

// How gemm() splits c (m x n, depth k) when GEMMs are not whole: `blocks`
// blocks of whole rows (or, by_columns, of whole columns), block i from
// bounds[i] to bounds[i + 1], bounds[0] = 0 and bounds[blocks] = m (or n); one
// block when it does not split. Fixed by the shape. A fixed array, so the
// GEMMs of a training step allocate nothing.
struct GemmSplit {
  bool by_columns = false;
  int blocks = 0;
  std::array<int64_t, kGemmBlocks + 1> bounds{};
};
GemmSplit gemm_split(int64_t m, int64_t n, int64_t k);
// lib: kDefault resolves as resolve_cpu_gemm does.
void gemm(ThreadPool& pool, CpuGemm lib, Trans ta, Trans tb, float alpha, CMat a, CMat b,
          float beta, Mat c);
// out = x w + bias, then ReLU when relu: gemm()'s blocks (the same split, so
// the same bits as gemm() then bias_relu_forward or bias_forward), each
// followed on its own thread by the bias (+ ReLU) over its block of out while
// that block is in the core's cache: no second pass, no second wake-up of the
// pool.
void gemm_bias_act(ThreadPool& pool, CpuGemm lib, CMat x, CMat w, const float* bias, bool relu,
                   Mat out);
// Rows [row_begin, row_end) of c only, as one single-threaded library call:
// for a block of gemm_split's rows, the bits gemm() gives those rows.
void gemm_rows(CpuGemm lib, Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
               int64_t row_begin, int64_t row_end);
// "2.6.0" (the oneDNN library loaded), or "" without oneDNN.
std::string onednn_version();
void u8_to_float(ThreadPool& pool, const uint8_t* in, Mat out, bool binarize);
void bias_relu_forward(ThreadPool& pool, Mat z, const float* bias);
// z = z + bias (then max(z, 0) when relu) over rows [r0, r1) and columns
// [c0, c1) of z only, on the calling thread: bias_relu_forward's and
// bias_forward's arithmetic on one block, for gemm_bias_act's blocks.
void bias_act_block(Mat z, const float* bias, bool relu, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1);
void bias_forward(Mat z, const float* bias);
void relu_backward(ThreadPool& pool, Mat grad, CMat act);
void bias_grad(CMat grad, float* db);
void softmax_xent(CMat logits, const uint8_t* labels, float* dlogits, double* metrics);
void adam_step(ThreadPool& pool, float* params, const float* grads, float* m, float* v, int64_t n,
               OptimizerState* state);

}  // namespace mlp::cpu
