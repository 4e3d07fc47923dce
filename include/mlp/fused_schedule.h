// The fused engine's schedule: which block computes which tile of which layer in which stage,
// in which order partial sums are added, and where every intermediate lives. Plain structs and
// inline functions shared by the GPU kernel, its CPU emulation and the schedule tests.
// Layout: W_l is (fan_in, fan_out) row-major inside the flat parameter buffer (ParamLayout's
// offsets); activations and gradients are (batch, width) row-major in one workspace.
// Invariants: a stage's tiles never read what another tile of the same stage writes, except a
// reduction, which runs after exactly the tiles of its group (counted, see fused-engine.md).
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "mlp/optimizer.h"  // defines: MLP_HOST_DEVICE, OptimizerState
#include "mlp/tensor_align.h"

namespace mlp::fused {

// ---- why this ownership -------------------------------------------------------------------
// Every GEMM of the step is out(batch, O) = in(batch, R) * M(R, O): forward (R = fan_in,
// O = fan_out, M = W), backward dX (R = fan_out, O = fan_in, M = W^T), dW (R = batch). With
// ~132 blocks and a 500-wide layer no 1-D split is good: splitting O alone makes every block
// read the whole input panel (132 x 200 KB through L2), splitting R alone makes one block add
// 132 partials. So each product is tiled 2-D: R is cut into red_tiles slots, O into out_tiles
// groups, one tile per block. A tile's chain over its R-range runs in one thread in R order
// (fma, from 0.0f); the group's partials are then added in slot order 0, 1, ..., by whichever
// block of the group finishes last (an integer counter picks it; the order never depends on
// who). Keeping red_tiles small (<= kMaxRedTiles) keeps that serial reduction short, so no
// grid barrier is spent on it. The forward tile also owns W[k-range, n-range] with its m and v:
// it computes dW of that tile (R = batch, no reduction) and applies Adam in registers, where
// the gradient is finished. Its bias slice belongs to the group's slot-0 tile. dX uses its own
// tiling of W^T (small red_tiles there too), so the Adam update of W_l must wait until every
// dX tile has read the old W_l: it runs one stage later (see make_stages).

inline constexpr int kMaxLayers = 8;
inline constexpr int kMaxStages = 2 * kMaxLayers;
inline constexpr int kMaxOpsPerStage = 2;
inline constexpr int kMaxRedTiles = 16;
inline constexpr int64_t kMaxElements = int64_t{1} << 31;  // int32 indexing inside buffers

enum class OpKind : int32_t { kForward = 0, kDx = 1, kDw = 2 };

struct Op {
  OpKind kind;
  int32_t layer;
};

struct Stage {
  int32_t op_count;
  Op ops[kMaxOpsPerStage];
};

// A 2-D tiling of a product's (reduced R) x (output O) index space.
struct Split {
  int32_t red_tiles, out_tiles;  // slots along R, groups along O
  int32_t red_size, out_size;    // extent of one tile (the last ones may be shorter)
};

struct LayerPlan {
  int32_t fan_in, fan_out;
  int64_t w_off, b_off;  // ParamLayout offsets in the flat buffer
  Split fwd;             // R = fan_in, O = fan_out; also the dW/Adam owners
  Split dx;              // R = fan_out, O = fan_in (unused for layer 0)
  // Workspace float offsets: act = this layer's output (batch, fan_out), post-ReLU, or the
  // logits for the last layer; dz = d(loss)/d(pre-activation) (batch, fan_out); the partial
  // slots (red_tiles, batch, width) exist only when red_tiles > 1.
  int64_t act_off, dz_off, fwd_part_off, dx_part_off;
  int32_t fwd_counter, dx_counter;  // first counter index of this layer's groups
};

struct Plan {
  int32_t layers, batch, grid, binarize;
  int32_t forward_only;  // 1: F_0 .. F_{L-1} and the loss only (eval): no dX, dW, Adam, step
  int64_t param_floats;  // ParamLayout::total_floats()
  LayerPlan layer[kMaxLayers];
  int32_t stage_count;
  Stage stage[kMaxStages];
  int32_t loss_counter, counter_count;
  int64_t counter_floats;  // counters occupy the workspace's first floats (16-byte aligned)
  int64_t work_floats;     // everything after them
  int64_t smem_floats;     // dynamic shared memory the kernel needs
};

// ---- tiles ------------------------------------------------------------------------------

struct Tile {
  int32_t red0, red1;  // [red0, red1) of the reduced dimension
  int32_t out0, out1;  // [out0, out1) of the output dimension
  int32_t slot, group;
};

MLP_HOST_DEVICE inline int32_t split_count(const Split& s) { return s.red_tiles * s.out_tiles; }

// Tile t of a split: the red_tiles slots of one group are consecutive tile numbers.
MLP_HOST_DEVICE inline Tile split_tile(const Split& s, int32_t red, int32_t out, int32_t t) {
  Tile tile;
  tile.slot = t % s.red_tiles;
  tile.group = t / s.red_tiles;
  tile.red0 = tile.slot * s.red_size;
  tile.red1 = tile.red0 + s.red_size < red ? tile.red0 + s.red_size : red;
  tile.out0 = tile.group * s.out_size;
  tile.out1 = tile.out0 + s.out_size < out ? tile.out0 + s.out_size : out;
  return tile;
}

MLP_HOST_DEVICE inline const Split& op_split(const Plan& p, Op op) {
  return op.kind == OpKind::kDx ? p.layer[op.layer].dx : p.layer[op.layer].fwd;
}
MLP_HOST_DEVICE inline int32_t op_red(const Plan& p, Op op) {
  const LayerPlan& l = p.layer[op.layer];
  return op.kind == OpKind::kDx ? l.fan_out : l.fan_in;
}
MLP_HOST_DEVICE inline int32_t op_out(const Plan& p, Op op) {
  const LayerPlan& l = p.layer[op.layer];
  return op.kind == OpKind::kDx ? l.fan_in : l.fan_out;
}
MLP_HOST_DEVICE inline int32_t op_tile_count(const Plan& p, Op op) {
  return split_count(op_split(p, op));
}
// For kForward and kDw, red = k and out = n of W; for kDx, red = n and out = k.
MLP_HOST_DEVICE inline Tile op_tile(const Plan& p, Op op, int32_t t) {
  return split_tile(op_split(p, op), op_red(p, op), op_out(p, op), t);
}

// Ownership: block b runs tile b of every op of a stage (make_plan keeps tile counts <= grid),
// so the forward tile, its dW tile and its Adam moments stay with one block for the whole run.
MLP_HOST_DEVICE inline int32_t block_tile(const Plan& p, Op op, int32_t block) {
  return block < op_tile_count(p, op) ? block : -1;
}

// The workspace holds the counters first, then the floats.
MLP_HOST_DEVICE inline int64_t workspace_bytes(const Plan& p) {
  return (p.counter_floats + p.work_floats) * 4;
}
// acts[j]: the input of layer j (j >= 1), i.e. layer j-1's output.
MLP_HOST_DEVICE inline int64_t act_in_off(const Plan& p, int32_t j) {
  return p.layer[j - 1].act_off;
}

// Shared-memory row pitch: odd, so a warp reading one column of several rows hits distinct banks.
MLP_HOST_DEVICE inline int32_t smem_pitch(int32_t n) { return n | 1; }

// Floats of shared memory a tile needs: the staged input panel and the W tile (forward, dX) or
// the two batch panels (dW); the loss stages the logits and per-row results.
MLP_HOST_DEVICE inline int64_t panel_smem(int32_t batch, int32_t red, int32_t out) {
  return int64_t{batch} * smem_pitch(red) + int64_t{red} * smem_pitch(out);
}
MLP_HOST_DEVICE inline int64_t dw_smem(int32_t batch, int32_t k, int32_t n) {
  return int64_t{batch} * (smem_pitch(k) + smem_pitch(n));
}
MLP_HOST_DEVICE inline int64_t loss_smem(int32_t batch, int32_t classes) {
  return int64_t{batch} * (classes + 2);
}

// ---- stages -------------------------------------------------------------------------------
// F_0 .. F_{L-1}: forward tiles (+ reductions; the last one's final reducer runs the loss).
// Then for l = L-1 .. 1: { dX_l, dW_{l+1} + Adam }, and last { dW_1 + Adam, dW_0 + Adam }.
// A grid barrier separates stages. dW_{l+1} waits one stage after dX_{l+1} because dX_{l+1}
// tiles read W_{l+1} across blocks; dW_l needs dz_l (from dX_{l+1}) and acts[l] (from F).
// A forward-only plan stops after F_{L-1} (its loss still adds into the metrics).
MLP_HOST_DEVICE inline void make_stages(Plan* p) {
  const int32_t L = p->layers;
  int32_t s = 0;
  for (int32_t l = 0; l < L; ++l) p->stage[s++] = Stage{1, {{OpKind::kForward, l}, {}}};
  if (p->forward_only) {
    p->stage_count = s;
    return;
  }
  for (int32_t l = L - 1; l >= 1; --l) {
    Stage st{1, {{OpKind::kDx, l}, {}}};
    if (l + 1 <= L - 1) st.ops[st.op_count++] = Op{OpKind::kDw, l + 1};
    p->stage[s++] = st;
  }
  Stage last{0, {}};
  if (L >= 2) last.ops[last.op_count++] = Op{OpKind::kDw, 1};
  last.ops[last.op_count++] = Op{OpKind::kDw, 0};
  p->stage[s++] = last;
  p->stage_count = s;
}

// ---- choosing the splits ------------------------------------------------------------------
// Cost of one block's tile on the critical path, in floats moved (a float from L2 ~ 8 FMAs):
// input panel (uint8 counts 1/4) + M tile + output + the last block's serial reduction
// (red_tiles partials) + FMAs / 8; the forward split also pays for its dW tile and Adam
// (6 floats per weight: p, m, v read and written).
MLP_HOST_DEVICE inline double split_cost(int32_t batch, int32_t tk, int32_t to, int32_t red_tiles,
                                         double in_cost, bool with_dw) {
  const double b = batch, k = tk, o = to;
  double c = b * k * in_cost + k * o + b * o + (red_tiles > 1 ? red_tiles * b * o : 0.0);
  c += b * k * o / 8.0;
  if (with_dw) c += b * k * in_cost + b * o + 6.0 * k * o + b * k * o / 8.0;
  return c;
}

// The cheapest split with red_tiles * out_tiles <= grid whose shared memory fits; false if none.
MLP_HOST_DEVICE inline bool choose_split(int32_t red, int32_t out, int32_t batch, int32_t grid,
                                         double in_cost, bool with_dw, int64_t smem_floats,
                                         Split* best) {
  double best_cost = -1.0;
  const int32_t max_r = red < kMaxRedTiles ? red : kMaxRedTiles;
  for (int32_t r = 1; r <= max_r && r <= grid; ++r) {
    const int32_t tk = (red + r - 1) / r, rt = (red + tk - 1) / tk;  // no empty slots
    if (rt != r) continue;
    for (int32_t o = 1; o <= out && r * o <= grid; ++o) {
      const int32_t to = (out + o - 1) / o, ot = (out + to - 1) / to;
      if (ot != o) continue;
      int64_t smem = panel_smem(batch, tk, to);
      if (with_dw && dw_smem(batch, tk, to) > smem) smem = dw_smem(batch, tk, to);
      if (smem > smem_floats) continue;
      const double c = split_cost(batch, tk, to, r, in_cost, with_dw);
      if (best_cost < 0.0 || c < best_cost) {
        best_cost = c;
        *best = Split{r, o, tk, to};
      }
    }
  }
  return best_cost >= 0.0;
}

// ---- one launch's buffers ------------------------------------------------------------------
// Device pointers for the kernel, host pointers for the emulation; the same struct for both.
struct StepArgs {
  const uint8_t* images;   // (rows, inputs) uint8: the batch itself, or a resident dataset
  const uint8_t* labels;   // (rows)
  const int32_t* indices;  // (steps, batch) rows of images/labels; null: row s * batch + r
  int64_t steps;           // training steps in this launch, >= 1
  float* params;           // flat ParamLayout buffers, Plan::param_floats each
  float* m;
  float* v;
  OptimizerState* state;  // step is read once at the start and advanced by `steps`
                          // (m, v and state may be null for a forward-only plan: never read)
  double* metrics;        // {loss_sum, correct}, added to in step order
  void* workspace;        // workspace_bytes(plan), zeroed once; every step leaves it reusable
  float* grads;           // optional (null in training): the last step's gradients, flat layout
};

// ---- the plan ---------------------------------------------------------------------------

struct PlanRequest {
  const int64_t* sizes;  // {inputs, hidden..., classes}
  int32_t size_count;
  int64_t batch;
  int32_t grid;        // blocks of the cooperative launch (one per SM)
  int64_t smem_bytes;  // dynamic shared memory one block may use
  bool binarize;
  bool forward_only = false;  // an evaluation plan: forward and loss, parameters untouched
};

struct Verdict {
  bool ok;
  char reason[240];  // one sentence when !ok
};

inline Verdict refuse(const char* fmt, long long a = 0, long long b = 0, long long c = 0,
                      long long d = 0) {
  Verdict v{false, {}};
  snprintf(v.reason, sizeof v.reason, fmt, a, b, c, d);
  return v;
}

// Builds the plan for a shape, a grid and a shared-memory budget, or says why it cannot.
inline Verdict make_plan(const PlanRequest& q, Plan* out) {
  const int32_t L = q.size_count - 1;
  if (L < 1 || L > kMaxLayers)
    return refuse("the fused engine supports 1 to %lld layers, not %lld", kMaxLayers, L);
  for (int32_t i = 0; i <= L; ++i)
    if (q.sizes[i] < 1 || q.sizes[i] > (1 << 20))
      return refuse("layer size %lld is outside 1..2^20", q.sizes[i]);
  if (q.batch < 1 || q.batch > 65536)
    return refuse("batch %lld is outside the fused engine's 1..65536", q.batch);
  if (q.grid < 1) return refuse("a grid of %lld blocks cannot run the fused step", q.grid);
  Plan p{};
  p.layers = L;
  p.batch = static_cast<int32_t>(q.batch);
  p.grid = q.grid;
  p.binarize = q.binarize ? 1 : 0;
  p.forward_only = q.forward_only ? 1 : 0;
  const bool train = !q.forward_only;
  const int64_t budget = q.smem_bytes / 4;
  int64_t total = 0, work = 0;
  int32_t counters = 0;
  const int32_t classes = static_cast<int32_t>(q.sizes[L]);
  int64_t smem = loss_smem(p.batch, classes);
  if (smem > budget)
    return refuse(
        "the loss of %lld rows x %lld classes needs %lld KB of shared memory, more "
        "than the %lld KB a block may use",
        q.batch, classes, smem * 4 / 1024, budget * 4 / 1024);
  for (int32_t l = 0; l < L; ++l) {
    LayerPlan& lp = p.layer[l];
    lp.fan_in = static_cast<int32_t>(q.sizes[l]);
    lp.fan_out = static_cast<int32_t>(q.sizes[l + 1]);
    lp.w_off = total;
    total += align_tensor_floats(int64_t{lp.fan_in} * lp.fan_out);  // as ParamLayout
    lp.b_off = total;
    total += align_tensor_floats(lp.fan_out);
    if (!choose_split(lp.fan_in, lp.fan_out, p.batch, p.grid, l == 0 ? 0.25 : 1.0, train, budget,
                      &lp.fwd))
      return refuse(
          "no tile of layer %lld (%lld x %lld) at batch %lld fits the shared memory "
          "a block may use (try a smaller --batch-size)",
          l, lp.fan_in, lp.fan_out, q.batch);
    if (train && l >= 1 &&
        !choose_split(lp.fan_out, lp.fan_in, p.batch, p.grid, 1.0, false, budget, &lp.dx))
      return refuse(
          "no backward tile of layer %lld (%lld x %lld) at batch %lld fits the shared "
          "memory a block may use (try a smaller --batch-size)",
          l, lp.fan_in, lp.fan_out, q.batch);
    if (l == 0 || !train) lp.dx = Split{1, 1, lp.fan_out, lp.fan_in};  // never run
    const int64_t act = int64_t{p.batch} * lp.fan_out;
    lp.act_off = work;
    work += (act + 3) / 4 * 4;
    lp.dz_off = work;
    work += (act + 3) / 4 * 4;
    lp.fwd_part_off = work;
    if (lp.fwd.red_tiles > 1) work += (lp.fwd.red_tiles * act + 3) / 4 * 4;
    lp.dx_part_off = work;
    if (train && l >= 1 && lp.dx.red_tiles > 1)
      work += (int64_t{lp.dx.red_tiles} * p.batch * lp.fan_in + 3) / 4 * 4;
    lp.fwd_counter = counters;
    counters += lp.fwd.out_tiles;
    lp.dx_counter = counters;
    counters += lp.dx.out_tiles;
    const int64_t f = panel_smem(p.batch, lp.fwd.red_size, lp.fwd.out_size);
    const int64_t w = train ? dw_smem(p.batch, lp.fwd.red_size, lp.fwd.out_size) : 0;
    const int64_t x = train && l >= 1 ? panel_smem(p.batch, lp.dx.red_size, lp.dx.out_size) : 0;
    smem = f > smem ? f : smem;
    smem = w > smem ? w : smem;
    smem = x > smem ? x : smem;
  }
  if (total >= kMaxElements || work >= kMaxElements)
    return refuse("the model (%lld floats) or its workspace (%lld floats) exceeds 2^31 elements",
                  total, work);
  p.param_floats = total;
  p.loss_counter = counters++;
  p.counter_count = counters;
  p.counter_floats = (counters + 3) / 4 * 4;
  p.work_floats = work;
  p.smem_floats = smem;
  make_stages(&p);
  *out = p;
  return Verdict{true, {}};
}

}  // namespace mlp::fused
