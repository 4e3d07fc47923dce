// The fused engine's schedule, on the CPU: the plan uses ParamLayout's offsets; every output
// element of every stage is written exactly once and every term of every sum added once; no
// task reads a value before the stage that produces it or after the step updated it; and the
// checker catches deliberately broken schedules (a dropped tile, a gap, Adam too early, stages
// out of order). Shapes: odd (7-13-5-3 at batch 10, ...) and MNIST (784-500-500-500-10, 100).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fused_reference.h"
#include "fused_schedule_check.h"
#include "mlp/fused_schedule.h"

namespace mlp::fused {
namespace {

constexpr int64_t kSmem = 227 * 1024;  // H100/H200: the most dynamic shared memory per block

struct Shape {
  std::vector<int64_t> sizes;
  int64_t batch;
  int32_t grid;
};

const std::vector<Shape> kShapes = {{{7, 13, 5, 3}, 10, 1},
                                    {{7, 13, 5, 3}, 10, 2},
                                    {{7, 13, 5, 3}, 10, 3},
                                    {{7, 13, 5, 3}, 10, 7},
                                    {{7, 13, 5, 3}, 10, 132},
                                    {{13, 7}, 5, 4},
                                    {{5, 9, 4}, 3, 6},
                                    {{3, 1, 2}, 1, 5},
                                    {{784, 500, 500, 500, 10}, 100, 132},
                                    {{784, 500, 500, 500, 10}, 100, 108}};

Plan plan_for(const Shape& s, int64_t smem = kSmem) {
  Plan p{};
  const Verdict v = make_plan(
      {s.sizes.data(), static_cast<int32_t>(s.sizes.size()), s.batch, s.grid, smem, false}, &p);
  EXPECT_TRUE(v.ok) << v.reason;
  return p;
}

std::string name(const Shape& s) {
  std::string n;
  for (int64_t x : s.sizes) n += (n.empty() ? "" : "-") + std::to_string(x);
  return n + " batch " + std::to_string(s.batch) + " grid " + std::to_string(s.grid);
}

TEST(FusedSchedule, PlanUsesParamLayoutOffsets) {
  for (const Shape& s : kShapes) {
    const Plan p = plan_for(s);
    const std::vector<int64_t> want = fused_ref::layout_offsets(s.sizes);
    for (int32_t l = 0; l < p.layers; ++l) {
      EXPECT_EQ(p.layer[l].w_off, want[2 * l]) << name(s) << " W" << l;
      EXPECT_EQ(p.layer[l].b_off, want[2 * l + 1]) << name(s) << " b" << l;
    }
    EXPECT_EQ(p.param_floats, want.back()) << name(s);
  }
}

TEST(FusedSchedule, TilesFitTheGridAndTheSharedMemory) {
  for (const Shape& s : kShapes) {
    const Plan p = plan_for(s);
    EXPECT_LE(p.smem_floats * 4, kSmem) << name(s);
    for (int32_t i = 0; i < p.stage_count; ++i)
      for (int32_t j = 0; j < p.stage[i].op_count; ++j) {
        const Op op = p.stage[i].ops[j];
        EXPECT_LE(op_tile_count(p, op), p.grid) << name(s) << " stage " << i;
        EXPECT_LE(op_split(p, op).red_tiles, kMaxRedTiles) << name(s) << " stage " << i;
      }
  }
}

// Stage list: F_0..F_{L-1}, then {dX_l, dW_{l+1}} for l = L-1..1, then {dW_1, dW_0}.
TEST(FusedSchedule, StagesFollowTheStepsDependencies) {
  const Plan p = plan_for(kShapes[8]);
  ASSERT_EQ(p.stage_count, 8);
  const std::vector<std::vector<std::pair<OpKind, int>>> want = {
      {{OpKind::kForward, 0}},
      {{OpKind::kForward, 1}},
      {{OpKind::kForward, 2}},
      {{OpKind::kForward, 3}},
      {{OpKind::kDx, 3}},
      {{OpKind::kDx, 2}, {OpKind::kDw, 3}},
      {{OpKind::kDx, 1}, {OpKind::kDw, 2}},
      {{OpKind::kDw, 1}, {OpKind::kDw, 0}}};
  for (int32_t s = 0; s < p.stage_count; ++s) {
    ASSERT_EQ(p.stage[s].op_count, static_cast<int32_t>(want[s].size())) << "stage " << s;
    for (int32_t i = 0; i < p.stage[s].op_count; ++i) {
      EXPECT_EQ(p.stage[s].ops[i].kind, want[s][i].first) << "stage " << s;
      EXPECT_EQ(p.stage[s].ops[i].layer, want[s][i].second) << "stage " << s;
    }
  }
}

TEST(FusedSchedule, EveryElementOnceAndEveryDependencyRespected) {
  for (const Shape& s : kShapes) {
    const Plan p = plan_for(s);
    EXPECT_EQ(check_schedule(p), "") << name(s);
  }
}

// An independent count: each op's tiles cover its (reduced x output) index space once.
TEST(FusedSchedule, TilesPartitionEveryProduct) {
  for (const Shape& s : kShapes) {
    const Plan p = plan_for(s);
    for (int32_t i = 0; i < p.stage_count; ++i)
      for (int32_t j = 0; j < p.stage[i].op_count; ++j) {
        const Op op = p.stage[i].ops[j];
        const int32_t red = op_red(p, op), out = op_out(p, op);
        std::vector<int> hits(static_cast<std::size_t>(red) * out, 0);
        for (int32_t b = 0; b < p.grid; ++b) {
          const int32_t t = block_tile(p, op, b);
          if (t < 0) continue;
          const Tile tl = op_tile(p, op, t);
          for (int32_t r = tl.red0; r < tl.red1; ++r)
            for (int32_t o = tl.out0; o < tl.out1; ++o)
              ++hits[static_cast<std::size_t>(r) * out + o];
        }
        for (std::size_t e = 0; e < hits.size(); ++e)
          ASSERT_EQ(hits[e], 1) << name(s) << " stage " << i << " op " << j << " element " << e;
      }
  }
}

// ---- the checker catches broken schedules -------------------------------------------------

TEST(FusedSchedule, CheckerFlagsADroppedTile) {
  const Plan p = plan_for(kShapes[4]);
  const TileOwner drop = [](const Plan& pl, Op op, int32_t b) {
    return op.kind == OpKind::kDw && op.layer == 1 && b == 2 ? -1 : block_tile(pl, op, b);
  };
  const std::string err = check_schedule(p, drop);
  EXPECT_NE(err.find("run by no block"), std::string::npos) << err;
}

TEST(FusedSchedule, CheckerFlagsATileRunTwice) {
  const Plan p = plan_for(kShapes[8]);
  const TileOwner twice = [](const Plan& pl, Op op, int32_t b) {
    return op.kind == OpKind::kForward && op.layer == 2 && b == 5 ? 4 : block_tile(pl, op, b);
  };
  const std::string err = check_schedule(p, twice);
  EXPECT_NE(err.find("two owners"), std::string::npos) << err;
}

TEST(FusedSchedule, CheckerFlagsAGapInAReduction) {
  Plan p = plan_for(kShapes[8]);
  ASSERT_GT(p.layer[1].dx.red_tiles, 1);
  p.layer[1].dx.red_size -= 1;  // every slot one term short: sums miss terms
  const std::string err = check_schedule(p);
  EXPECT_NE(err.find("added 0 times"), std::string::npos) << err;
}

TEST(FusedSchedule, CheckerFlagsAnUncoveredOutput) {
  Plan p = plan_for(kShapes[2]);
  p.layer[0].fwd.out_size -= 1;  // the groups no longer reach the last column
  const std::string err = check_schedule(p);
  EXPECT_FALSE(err.empty());
}

TEST(FusedSchedule, CheckerFlagsAdamBeforeTheLastReaderOfW) {
  for (const Shape& s : {kShapes[4], kShapes[8]}) {
    Plan p = plan_for(s);
    const int32_t L = p.layers, dx_stage = L;  // stage L runs dX_{L-1}
    ASSERT_EQ(p.stage[dx_stage].ops[0].kind, OpKind::kDx);
    ASSERT_EQ(p.stage[dx_stage + 1].ops[1].kind, OpKind::kDw);
    p.stage[dx_stage].ops[p.stage[dx_stage].op_count++] = p.stage[dx_stage + 1].ops[1];
    p.stage[dx_stage + 1].op_count = 1;  // dW_{L-1} moved next to dX_{L-1}: a WAR race on W
    const std::string err = check_schedule(p);
    EXPECT_NE(err.find("W" + std::to_string(L - 1)), std::string::npos) << name(s) << ": " << err;
  }
}

TEST(FusedSchedule, CheckerFlagsStagesOutOfOrder) {
  Plan p = plan_for(kShapes[8]);
  std::swap(p.stage[1], p.stage[2]);  // F_2 before F_1
  const std::string err = check_schedule(p);
  EXPECT_NE(err.find("before the stage that produces it"), std::string::npos) << err;
}

// ---- the forward-only (evaluation) plan ---------------------------------------------------

Plan forward_plan_for(const Shape& s) {
  Plan p{};
  PlanRequest q{s.sizes.data(), static_cast<int32_t>(s.sizes.size()), s.batch, s.grid, kSmem,
                false};
  q.forward_only = true;
  const Verdict v = make_plan(q, &p);
  EXPECT_TRUE(v.ok) << v.reason;
  return p;
}

// eval --engine fused: every activation and partial once per batch, the logits' loss once, and
// no parameter, moment or hidden-layer gradient written at all.
TEST(FusedSchedule, ForwardOnlyPlanIsSoundAndWritesNoParameter) {
  for (const Shape& s : kShapes) {
    const Plan p = forward_plan_for(s);
    EXPECT_EQ(p.stage_count, p.layers) << name(s);
    EXPECT_EQ(check_schedule(p), "") << name(s);
  }
}

TEST(FusedSchedule, CheckerFlagsBackwardWorkInAForwardOnlyPlan) {
  const Plan p0 = forward_plan_for(kShapes[4]);
  Plan p = p0;  // a dX stage sneaks in: it writes a hidden layer's gradient
  p.stage[p.stage_count++] = Stage{1, {{OpKind::kDx, p.layers - 1}, {}}};
  std::string err = check_schedule(p);
  EXPECT_NE(err.find("dz[" + std::to_string(p.layers - 2) + "] was written 1 times (want never)"),
            std::string::npos)
      << err;
  p = p0;  // an Adam update: its gradient was never produced
  p.stage[p.stage_count++] = Stage{1, {{OpKind::kDw, 0}, {}}};
  err = check_schedule(p);
  EXPECT_NE(err.find("dz[0] is read before the stage that produces it"), std::string::npos) << err;
}

// ---- what the engine refuses ------------------------------------------------------------

TEST(FusedSchedule, RefusesUnsupportedShapesWithAReason) {
  const auto verdict = [](std::vector<int64_t> sizes, int64_t batch, int32_t grid, int64_t smem) {
    Plan p{};
    return make_plan({sizes.data(), static_cast<int32_t>(sizes.size()), batch, grid, smem, false},
                     &p);
  };
  const std::vector<int64_t> mnist{784, 500, 500, 500, 10};
  EXPECT_TRUE(verdict(mnist, 100, 132, kSmem).ok);
  const Verdict small_smem = verdict(mnist, 100, 132, 16 * 1024);
  EXPECT_FALSE(small_smem.ok);
  EXPECT_NE(std::string(small_smem.reason).find("shared memory"), std::string::npos)
      << small_smem.reason;
  const Verdict one_block = verdict(mnist, 100, 1, kSmem);
  EXPECT_FALSE(one_block.ok) << "one block cannot hold a 784x500 tile's panels";
  EXPECT_FALSE(verdict(std::vector<int64_t>(10, 8), 4, 8, kSmem).ok) << "9 layers";
  EXPECT_FALSE(verdict({784}, 100, 132, kSmem).ok) << "no layer";
  EXPECT_FALSE(verdict(mnist, 0, 132, kSmem).ok) << "batch 0";
  EXPECT_FALSE(verdict(mnist, 100, 0, kSmem).ok) << "grid 0";
  const Verdict huge = verdict({784, 500, 10}, 100000, 132, kSmem);
  EXPECT_FALSE(huge.ok);
  EXPECT_GT(std::string(huge.reason).size(), 10u);
}

}  // namespace
}  // namespace mlp::fused
