// Device code of the fused step, one function per tile kind (see fused_step.cu for the kernel
// and src/fused/fused_emulation.cpp for the same code on the CPU, function for function).
// Layout: a tile stages its two operand panels in dynamic shared memory (pitch smem_pitch),
// then each thread owns a 4x4 micro-tile of outputs, each one fma chain in reduction order.
// Invariants: cross-block data is read through L2 (__ldcg), inputs that never change during the
// launch through __ldg; every __syncthreads is reached by the whole block (tile choice and
// last-arrival results are block-uniform).
#pragma once

#include <cuda/atomic>

#include "mlp/fused_math.h"
#include "mlp/fused_schedule.h"

namespace mlp::kernels::fused_dev {

using namespace mlp::fused;  // NOLINT: the schedule and recipes are this file's vocabulary

struct Ctx {
  const Plan& p;
  const StepArgs& a;
  int64_t step;  // within this launch
  const AdamScalars& adam;
  int32_t* counters;
  float* work;
  float* smem;
};

__device__ __forceinline__ int64_t batch_row(const Ctx& c, int32_t r) {
  const int64_t i = c.step * c.p.batch + r;
  return c.a.indices ? static_cast<int64_t>(__ldg(c.a.indices + i)) : i;
}

// out(i, j) = fma chain over p in [0, P) of x(i, p) * y(p, j), from 0.0f; epi(i, j, value).
template <class X, class Y, class Epi>
__device__ __forceinline__ void tile_gemm(int M, int N, int P, X x, Y y, Epi epi) {
  constexpr int kRm = 4, kRn = 4;
  const int mt = (M + kRm - 1) / kRm, nt = (N + kRn - 1) / kRn;
  for (int t = threadIdx.x; t < mt * nt; t += blockDim.x) {
    const int i0 = (t / nt) * kRm, j0 = (t % nt) * kRn;
    int ii[kRm], jj[kRn];  // clamped: rows/columns past the edge recompute the last one
#pragma unroll
    for (int a = 0; a < kRm; ++a) ii[a] = i0 + a < M ? i0 + a : M - 1;
#pragma unroll
    for (int b = 0; b < kRn; ++b) jj[b] = j0 + b < N ? j0 + b : N - 1;
    float acc[kRm][kRn] = {};
    for (int p = 0; p < P; ++p) {
      float xv[kRm], yv[kRn];
#pragma unroll
      for (int a = 0; a < kRm; ++a) xv[a] = x(ii[a], p);
#pragma unroll
      for (int b = 0; b < kRn; ++b) yv[b] = y(p, jj[b]);
#pragma unroll
      for (int a = 0; a < kRm; ++a)
#pragma unroll
        for (int b = 0; b < kRn; ++b) acc[a][b] = fma_rn(xv[a], yv[b], acc[a][b]);
    }
#pragma unroll
    for (int a = 0; a < kRm; ++a)
#pragma unroll
      for (int b = 0; b < kRn; ++b)
        if (i0 + a < M && j0 + b < N) epi(i0 + a, j0 + b, acc[a][b]);
  }
}

// Counted hand-off: every block of a group arrives once; the one that completes the count gets
// true (block-uniform) and resets the counter for the next step. The acq_rel add orders this
// block's earlier writes (made visible to thread 0 by the barrier) before it, and the other
// blocks' writes before the winner's later reads (as cooperative groups' grid sync does).
__device__ __forceinline__ bool last_arrival(int32_t* counter, int32_t expected) {
  __shared__ int s_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    cuda::atomic_ref<int32_t, cuda::thread_scope_device> ref(*counter);
    const bool last = ref.fetch_add(1, cuda::memory_order_acq_rel) + 1 == expected;
    if (last) ref.store(0, cuda::memory_order_relaxed);
    s_last = last ? 1 : 0;
  }
  __syncthreads();
  return s_last != 0;
}

// Rows of layer l's input, columns [k0, k1), into dst (pitch): uint8 images or acts[l].
__device__ __forceinline__ void stage_input(const Ctx& c, int32_t l, int32_t k0, int32_t k1,
                                            float* dst, int32_t pitch) {
  const int32_t in = c.p.layer[l].fan_in, cols = k1 - k0;
  for (int32_t e = threadIdx.x; e < c.p.batch * cols; e += blockDim.x) {
    const int32_t r = e / cols, k = k0 + e % cols;
    float x;
    if (l == 0)
      x = input_value(__ldg(c.a.images + batch_row(c, r) * in + k), c.p.binarize != 0);
    else
      x = load_coherent(c.work + act_in_off(c.p, l) + int64_t{r} * in + k);
    dst[r * pitch + (k - k0)] = x;
  }
}

// The loss, run by the block that completed the last layer: one thread per row.
__device__ __forceinline__ void loss(const Ctx& c) {
  const LayerPlan& lp = c.p.layer[c.p.layers - 1];
  const int32_t B = c.p.batch, C = lp.fan_out;
  float* x = c.smem;
  float* row_loss = x + B * C;
  int* row_ok = reinterpret_cast<int*>(row_loss + B);
  for (int32_t e = threadIdx.x; e < B * C; e += blockDim.x)
    x[e] = load_coherent(c.work + lp.act_off + e);
  __syncthreads();
  const float inv_rows = div_rn(1.0f, static_cast<float>(B));
  for (int32_t r = threadIdx.x; r < B; r += blockDim.x) {
    int ok = 0;
    row_loss[r] = softmax_xent_row(x + r * C, C, __ldg(c.a.labels + batch_row(c, r)), inv_rows,
                                   c.work + lp.dz_off + int64_t{r} * C, &ok);
    row_ok[r] = ok;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    long long correct = 0;
    for (int32_t r = 0; r < B; ++r) {
      total += static_cast<double>(row_loss[r]);
      correct += row_ok[r];
    }
    c.a.metrics[0] = __ldcg(c.a.metrics) + total;
    c.a.metrics[1] = __ldcg(c.a.metrics + 1) + static_cast<double>(correct);
  }
  __syncthreads();
}

__device__ __forceinline__ void forward_tile(const Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const bool last = l == p.layers - 1;
  const int32_t tk = t.red1 - t.red0, tn = t.out1 - t.out0, N = lp.fan_out, B = p.batch;
  const int32_t xp = smem_pitch(tk), yp = smem_pitch(tn);
  float* xs = c.smem;
  float* ys = c.smem + B * xp;
  stage_input(c, l, t.red0, t.red1, xs, xp);
  for (int32_t e = threadIdx.x; e < tk * tn; e += blockDim.x)
    ys[(e / tn) * yp + e % tn] =
        load_coherent(c.a.params + lp.w_off + int64_t{t.red0 + e / tn} * N + t.out0 + e % tn);
  __syncthreads();
  float* act = c.work + lp.act_off;
  float* part = c.work + lp.fwd_part_off;
  const float* bias = c.a.params + lp.b_off;
  const int64_t slot_stride = int64_t{B} * N;
  const int32_t red_tiles = lp.fwd.red_tiles;
  tile_gemm(
      B, tn, tk, [&](int i, int k) { return xs[i * xp + k]; },
      [&](int k, int j) { return ys[k * yp + j]; },
      [&](int r, int n, float acc) {
        const int64_t o = int64_t{r} * N + t.out0 + n;
        if (red_tiles > 1)
          part[t.slot * slot_stride + o] = acc;
        else
          act[o] = forward_output(acc, load_coherent(bias + t.out0 + n), !last);
      });
  if (red_tiles > 1) {
    if (!last_arrival(c.counters + lp.fwd_counter + t.group, red_tiles)) return;
    for (int32_t e = threadIdx.x; e < B * tn; e += blockDim.x) {
      const int32_t n = t.out0 + e % tn;
      const int64_t o = int64_t{e / tn} * N + n;
      act[o] = forward_output(sum_slots(part + o, slot_stride, red_tiles), load_coherent(bias + n),
                              !last);
    }
  }
  if (last && last_arrival(c.counters + p.loss_counter, lp.fwd.out_tiles)) loss(c);
  __syncthreads();
}

__device__ __forceinline__ void dx_tile(const Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const int32_t tn = t.red1 - t.red0, tk = t.out1 - t.out0, N = lp.fan_out, K = lp.fan_in;
  const int32_t B = p.batch, xp = smem_pitch(tn), yp = smem_pitch(tk);
  float* xs = c.smem;
  float* ys = c.smem + B * xp;
  const float* dz = c.work + lp.dz_off;
  for (int32_t e = threadIdx.x; e < B * tn; e += blockDim.x)
    xs[(e / tn) * xp + e % tn] = load_coherent(dz + int64_t{e / tn} * N + t.red0 + e % tn);
  for (int32_t e = threadIdx.x; e < tk * tn; e += blockDim.x)  // ys[n][k] = W(k, n)
    ys[(e % tn) * yp + e / tn] =
        load_coherent(c.a.params + lp.w_off + int64_t{t.out0 + e / tn} * N + t.red0 + e % tn);
  __syncthreads();
  const float* act = c.work + act_in_off(p, l);
  float* out = c.work + p.layer[l - 1].dz_off;
  float* part = c.work + lp.dx_part_off;
  const int64_t slot_stride = int64_t{B} * K;
  const int32_t red_tiles = lp.dx.red_tiles;
  tile_gemm(
      B, tk, tn, [&](int i, int n) { return xs[i * xp + n]; },
      [&](int n, int j) { return ys[n * yp + j]; },
      [&](int r, int k, float acc) {
        const int64_t o = int64_t{r} * K + t.out0 + k;
        if (red_tiles > 1)
          part[t.slot * slot_stride + o] = acc;
        else
          out[o] = dx_output(acc, load_coherent(act + o));
      });
  if (red_tiles > 1 && last_arrival(c.counters + lp.dx_counter + t.group, red_tiles))
    for (int32_t e = threadIdx.x; e < B * tk; e += blockDim.x) {
      const int64_t o = int64_t{e / tk} * K + t.out0 + e % tk;
      out[o] = dx_output(sum_slots(part + o, slot_stride, red_tiles), load_coherent(act + o));
    }
  __syncthreads();
}

// dW of the owner's tile, Adam applied in registers; the slot-0 tile owns the bias slice.
// p, m, v of an element are read and written by the same thread every step.
__device__ __forceinline__ void dw_tile(const Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const int32_t tk = t.red1 - t.red0, tn = t.out1 - t.out0, N = lp.fan_out, B = p.batch;
  const int32_t xp = smem_pitch(tk), yp = smem_pitch(tn);
  float* xs = c.smem;
  float* ys = c.smem + B * xp;
  stage_input(c, l, t.red0, t.red1, xs, xp);
  const float* dz = c.work + lp.dz_off;
  for (int32_t e = threadIdx.x; e < B * tn; e += blockDim.x)
    ys[(e / tn) * yp + e % tn] = load_coherent(dz + int64_t{e / tn} * N + t.out0 + e % tn);
  __syncthreads();
  const StepArgs& a = c.a;
  const AdamScalars adam = c.adam;
  tile_gemm(
      tk, tn, B, [&](int k, int r) { return xs[r * xp + k]; },
      [&](int r, int n) { return ys[r * yp + n]; },
      [&](int k, int n, float g) {
        const int64_t i = lp.w_off + int64_t{t.red0 + k} * N + t.out0 + n;
        if (a.grads) a.grads[i] = g;
        adam_element(a.params + i, a.m + i, a.v + i, g, adam);
      });
  if (t.slot == 0)
    for (int32_t n = threadIdx.x; n < tn; n += blockDim.x) {
      float db = 0.0f;
      for (int32_t r = 0; r < B; ++r) db = add_rn(db, ys[r * yp + n]);
      const int64_t i = lp.b_off + t.out0 + n;
      if (a.grads) a.grads[i] = db;
      adam_element(a.params + i, a.m + i, a.v + i, db, adam);
    }
  __syncthreads();
}

}  // namespace mlp::kernels::fused_dev
