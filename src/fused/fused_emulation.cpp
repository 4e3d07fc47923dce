// CPU emulation of the fused step (see fused_emulation.h). Reads in the kernel's order: one
// tile of each op kind (forward, dX, dW + Adam), the counted reductions, the loss, then the
// stage loop. Each tile stages its panels as the kernel stages shared memory, then every output
// element is one fma chain in reduction order starting from 0.0f, exactly as one GPU thread
// computes it. Counters live in the workspace and follow the kernel's protocol: the block that
// brings a group's count to its size performs the group's reduction and resets the counter.
#include "fused/fused_emulation.h"

#include <cstddef>
#include <numeric>
#include <vector>

#include "mlp/fused_math.h"

// Every a*b+c below is fma_rn or two roundings: GCC contracts nothing in ISO C++ mode; clang
// (whose default is -ffp-contract=on) is told so.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace mlp::fused {
namespace {

struct Ctx {
  const Plan& p;
  const StepArgs& a;
  int64_t step;  // step within this launch
  AdamScalars adam;
  int32_t* counters;
  float* work;
  std::vector<float> x_panel, y_panel;  // the block's "shared memory"
};

int64_t batch_row(const Ctx& c, int32_t r) {
  const int64_t i = c.step * c.p.batch + r;
  return c.a.indices ? c.a.indices[i] : i;
}

// Row r, column k of layer l's input: the uint8 image (layer 0) or acts[l].
void stage_input(Ctx& c, int32_t l, int32_t k0, int32_t k1, float* dst, int32_t pitch) {
  const int32_t in = c.p.layer[l].fan_in;
  for (int32_t r = 0; r < c.p.batch; ++r)
    for (int32_t k = k0; k < k1; ++k) {
      float x;
      if (l == 0)
        x = input_value(c.a.images[batch_row(c, r) * in + k], c.p.binarize != 0);
      else
        x = load_coherent(c.work + act_in_off(c.p, l) + int64_t{r} * in + k);
      dst[int64_t{r} * pitch + (k - k0)] = x;
    }
}

// The kernel's last-arrival test: true for the block whose arrival completes the group.
bool arrive(int32_t* counter, int32_t expected) {
  if (++*counter < expected) return false;
  *counter = 0;
  return true;
}

void loss(Ctx& c) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[p.layers - 1];
  const int32_t classes = lp.fan_out;
  const float inv_rows = div_rn(1.0f, static_cast<float>(p.batch));
  double total = 0.0;
  int64_t correct = 0;
  for (int32_t r = 0; r < p.batch; ++r) {
    int ok = 0;
    const float row = softmax_xent_row(c.work + lp.act_off + int64_t{r} * classes, classes,
                                       c.a.labels[batch_row(c, r)], inv_rows,
                                       c.work + lp.dz_off + int64_t{r} * classes, &ok);
    total += static_cast<double>(row);
    correct += ok;
  }
  c.a.metrics[0] += total;
  c.a.metrics[1] += static_cast<double>(correct);
}

// Forward: out(r, n) over k in the tile's range; the group's reduction adds slots in order.
void forward_tile(Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const bool last = l == p.layers - 1;
  const int32_t tk = t.red1 - t.red0, tn = t.out1 - t.out0, N = lp.fan_out;
  const int32_t xp = smem_pitch(tk), yp = smem_pitch(tn);
  float* xs = c.x_panel.data();
  float* ys = c.y_panel.data();
  stage_input(c, l, t.red0, t.red1, xs, xp);
  for (int32_t k = 0; k < tk; ++k)
    for (int32_t n = 0; n < tn; ++n)
      ys[k * yp + n] = c.a.params[lp.w_off + int64_t{t.red0 + k} * N + t.out0 + n];
  float* act = c.work + lp.act_off;
  float* part = c.work + lp.fwd_part_off;
  const float* bias = c.a.params + lp.b_off;
  const int64_t slot_stride = int64_t{p.batch} * N;
  for (int32_t r = 0; r < p.batch; ++r)
    for (int32_t n = 0; n < tn; ++n) {
      float acc = 0.0f;
      for (int32_t k = 0; k < tk; ++k) acc = fma_rn(xs[r * xp + k], ys[k * yp + n], acc);
      const int64_t o = int64_t{r} * N + t.out0 + n;
      if (lp.fwd.red_tiles > 1)
        part[t.slot * slot_stride + o] = acc;
      else
        act[o] = forward_output(acc, load_coherent(bias + t.out0 + n), !last);
    }
  if (lp.fwd.red_tiles > 1) {
    if (!arrive(c.counters + lp.fwd_counter + t.group, lp.fwd.red_tiles)) return;
    for (int32_t r = 0; r < p.batch; ++r)
      for (int32_t n = t.out0; n < t.out1; ++n) {
        const int64_t o = int64_t{r} * N + n;
        act[o] = forward_output(sum_slots(part + o, slot_stride, lp.fwd.red_tiles),
                                load_coherent(bias + n), !last);
      }
  }
  if (last && arrive(c.counters + p.loss_counter, lp.fwd.out_tiles)) loss(c);
}

// dX of layer l: dz_{l-1}(r, k) = sum over n of dz_l(r, n) W(k, n), masked by acts[l] > 0.
void dx_tile(Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const int32_t tn = t.red1 - t.red0, tk = t.out1 - t.out0, N = lp.fan_out, K = lp.fan_in;
  const int32_t xp = smem_pitch(tn), yp = smem_pitch(tk);
  float* xs = c.x_panel.data();
  float* ys = c.y_panel.data();
  const float* dz = c.work + lp.dz_off;
  for (int32_t r = 0; r < p.batch; ++r)
    for (int32_t n = 0; n < tn; ++n)
      xs[r * xp + n] = load_coherent(dz + int64_t{r} * N + t.red0 + n);
  for (int32_t n = 0; n < tn; ++n)  // W tile transposed: ys[n][k] = W(k, n)
    for (int32_t k = 0; k < tk; ++k)
      ys[n * yp + k] = load_coherent(c.a.params + lp.w_off + int64_t{t.out0 + k} * N + t.red0 + n);
  const float* act = c.work + act_in_off(p, l);
  float* out = c.work + p.layer[l - 1].dz_off;
  float* part = c.work + lp.dx_part_off;
  const int64_t slot_stride = int64_t{p.batch} * K;
  for (int32_t r = 0; r < p.batch; ++r)
    for (int32_t k = 0; k < tk; ++k) {
      float acc = 0.0f;
      for (int32_t n = 0; n < tn; ++n) acc = fma_rn(xs[r * xp + n], ys[n * yp + k], acc);
      const int64_t o = int64_t{r} * K + t.out0 + k;
      if (lp.dx.red_tiles > 1)
        part[t.slot * slot_stride + o] = acc;
      else
        out[o] = dx_output(acc, load_coherent(act + o));
    }
  if (lp.dx.red_tiles > 1 && arrive(c.counters + lp.dx_counter + t.group, lp.dx.red_tiles))
    for (int32_t r = 0; r < p.batch; ++r)
      for (int32_t k = t.out0; k < t.out1; ++k) {
        const int64_t o = int64_t{r} * K + k;
        out[o] =
            dx_output(sum_slots(part + o, slot_stride, lp.dx.red_tiles), load_coherent(act + o));
      }
}

// dW of the owner's tile (a chain over the batch rows) and Adam on it at once; the group's
// slot-0 tile also owns the bias slice: db(n) = 0 + dz(0, n) + dz(1, n) + ... (bias_grad).
void dw_tile(Ctx& c, int32_t l, const Tile& t) {
  const Plan& p = c.p;
  const LayerPlan& lp = p.layer[l];
  const int32_t tk = t.red1 - t.red0, tn = t.out1 - t.out0, N = lp.fan_out;
  const int32_t xp = smem_pitch(tk), yp = smem_pitch(tn);
  float* xs = c.x_panel.data();
  float* ys = c.y_panel.data();
  stage_input(c, l, t.red0, t.red1, xs, xp);
  const float* dz = c.work + lp.dz_off;
  for (int32_t r = 0; r < p.batch; ++r)
    for (int32_t n = 0; n < tn; ++n)
      ys[r * yp + n] = load_coherent(dz + int64_t{r} * N + t.out0 + n);
  for (int32_t k = 0; k < tk; ++k)
    for (int32_t n = 0; n < tn; ++n) {
      float acc = 0.0f;
      for (int32_t r = 0; r < p.batch; ++r) acc = fma_rn(xs[r * xp + k], ys[r * yp + n], acc);
      const int64_t i = lp.w_off + int64_t{t.red0 + k} * N + t.out0 + n;
      if (c.a.grads) c.a.grads[i] = acc;
      adam_element(c.a.params + i, c.a.m + i, c.a.v + i, acc, c.adam);
    }
  if (t.slot != 0) return;
  for (int32_t n = 0; n < tn; ++n) {
    float db = 0.0f;
    for (int32_t r = 0; r < p.batch; ++r) db = add_rn(db, ys[r * yp + n]);
    const int64_t i = lp.b_off + t.out0 + n;
    if (c.a.grads) c.a.grads[i] = db;
    adam_element(c.a.params + i, c.a.m + i, c.a.v + i, db, c.adam);
  }
}

void run_op(Ctx& c, Op op, int32_t block) {
  const int32_t t = block_tile(c.p, op, block);
  if (t < 0) return;
  const Tile tile = op_tile(c.p, op, t);
  switch (op.kind) {
    case OpKind::kForward:
      forward_tile(c, op.layer, tile);
      break;
    case OpKind::kDx:
      dx_tile(c, op.layer, tile);
      break;
    case OpKind::kDw:
      dw_tile(c, op.layer, tile);
      break;
  }
}

// A permutation of the blocks (Fisher-Yates on splitmix64), fresh for every stage.
void shuffle_blocks(std::vector<int32_t>& order, uint64_t& state) {
  for (std::size_t i = order.size(); i > 1; --i) {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::swap(order[i - 1], order[z % i]);
  }
}

}  // namespace

void emulate_steps(const Plan& plan, const StepArgs& args, const EmulationOptions& opt) {
  auto* counters = static_cast<int32_t*>(args.workspace);
  Ctx c{plan,
        args,
        0,
        {},
        counters,
        static_cast<float*>(args.workspace) + plan.counter_floats,
        std::vector<float>(static_cast<std::size_t>(plan.smem_floats)),
        std::vector<float>(static_cast<std::size_t>(plan.smem_floats))};
  std::vector<int32_t> order(static_cast<std::size_t>(plan.grid));
  uint64_t shuffle_state = opt.block_order_seed;
  const bool train = plan.forward_only == 0;
  const int64_t t0 = train ? args.state->step : 0;  // every block reads it before the first barrier
  for (c.step = 0; c.step < args.steps; ++c.step) {
    if (train) c.adam = adam_scalars(*args.state, t0 + c.step + 1);
    for (int32_t s = 0; s < plan.stage_count; ++s) {
      std::iota(order.begin(), order.end(), 0);
      if (opt.block_order_seed != 0) shuffle_blocks(order, shuffle_state);
      for (int32_t block : order)
        for (int32_t i = 0; i < plan.stage[s].op_count; ++i) run_op(c, plan.stage[s].ops[i], block);
      // grid barrier
    }
  }
  if (train) args.state->step = t0 + args.steps;  // the kernel's block 0: after its first barrier
}

}  // namespace mlp::fused
