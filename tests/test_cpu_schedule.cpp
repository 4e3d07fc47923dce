// The CPU's side-by-side schedule of the step plan (StepPlan::
// side_by_side_schedule, Backend::run_side_by_side, Backend::run_beside_pieces):
// which nodes pair, that layer 0's dW and its Adam run in pieces with Adam of
// the big layers beside them, that every dependency stays ordered, that every
// piece runs once and after the piece it follows, that the CPU runs plans
// without lanes, and that the step's bits do not depend on the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "mlp/model.h"
#include "mlp/step_plan.h"
#include "step_plan_testing.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::Net;
using testing::random_batch;

// On the CPU (Backend::prefers_side_by_side) StepPlan::run pairs each layer's
// dW and dX GEMMs above the first, and nothing else: Adam, the kernels and
// the lone dW of layer 0 keep their order and their own runs.
TEST(StepPlan, CpuPairsEachLayersDwWithItsDx) {
  Net net({784, 500, 500, 500, 10});
  EXPECT_TRUE(net.be->prefers_side_by_side());
  const StepPlan plan = net.plan(100);
  std::vector<std::string> paired;
  for (int i = 0; i + 1 < static_cast<int>(plan.nodes().size()); ++i)
    if (plan.pairs_with_next(i))
      paired.push_back(plan.nodes()[i].name + "+" + plan.nodes()[i + 1].name);
  EXPECT_EQ(paired, (std::vector<std::string>{"dw_gemm3+dx_gemm3", "dw_gemm2+dx_gemm2",
                                              "dw_gemm1+dx_gemm1"}));
}

// The step's bits do not depend on the thread count, with GEMMs large enough
// to be split into blocks and a layer's dW and dX side by side (whole on one
// core each at 2 and 3 threads, one after the other at 1).
TEST(StepPlan, PlanStepGivesTheSameBitsOnAnyThreadCount) {
  const std::vector<int64_t> sizes = {784, 500, 500, 10};
  const int64_t batch = 100;
  for (const CpuGemm lib : {CpuGemm::kOpenblas, CpuGemm::kDefault}) {
    std::vector<ModelState> states;
    for (int threads : {1, 2, 3}) {
      Net net(sizes, batch, threads, lib);
      net.model.set_params(initial_params(net.model.layout(), InitScheme::kHe, 5));
      Pcg32 rng(21, 3);
      for (int step = 0; step < 3; ++step) {
        const std::vector<uint8_t> host = random_batch(rng, batch, sizes[0]);
        net.be->upload(net.input.data(), host.data(), host.size());
        net.model.train_step(net.images(), net.labels(), batch, net.metrics.as<double>());
      }
      states.push_back(net.model.state());
    }
    EXPECT_EQ(states[0].step, 3);
    for (std::size_t t = 1; t < states.size(); ++t) {
      EXPECT_EQ(states[0].params, states[t].params)
          << cpu_gemm_name(lib) << ", " << t + 1 << " threads";
      EXPECT_EQ(states[0].m, states[t].m) << cpu_gemm_name(lib) << ", " << t + 1 << " threads";
      EXPECT_EQ(states[0].v, states[t].v) << cpu_gemm_name(lib) << ", " << t + 1 << " threads";
    }
  }
}

// On the CPU (prefers_side_by_side) run() follows side_by_side_schedule():
// nodes in order, no lanes selected (the lane loop: test_step_plan.cpp's
// RunOnLanesIssuesNodesInOrderAndEndsOnLaneZero).
TEST(StepPlan, RunOnTheCpuIssuesNodesInOrderWithoutLanes) {
  auto be = make_cpu_backend({1});
  testing::LaneLog log(*be);
  log.plan.run(*be);
  EXPECT_EQ(log.seen, (std::vector<std::pair<std::string, int>>{{"a", 0}, {"b", 0}, {"c", 0}}));
  EXPECT_EQ(be->lane(), 0);
}

// The CPU's schedule of the network's step: each layer's dW and dX side by
// side; layer 0's dW in its 16 row blocks, each followed by Adam over its rows,
// claimed by both cores while one first runs the deferred Adam updates of
// layers 2 and 1; small kernels and the rest in plan order, on their own.
TEST(StepPlan, CpuScheduleRunsLayerZerosDwAndAdamInPiecesBesideTheBigAdams) {
  Net net({784, 500, 500, 500, 10});
  const StepPlan plan = net.plan(100);
  std::vector<std::string> groups;  // StepPlan::group_name of each
  std::vector<int> seen(plan.nodes().size(), 0);
  std::vector<int> order;
  for (const StepPlan::Group& g : plan.side_by_side_schedule()) {
    groups.push_back(plan.group_name(g));
    for (const auto* part : {&g.first, &g.beside, &g.pieces})
      for (int i : *part) {
        ++seen[i];
        order.push_back(i);
      }
  }
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << plan.nodes()[i].name;
  // Every dependency runs in an earlier group, or earlier in the same part
  // (in a pieces part: piece by piece, earlier in the same piece).
  std::vector<int> group_of(plan.nodes().size()), part_of(plan.nodes().size());
  for (std::size_t g = 0; g < plan.side_by_side_schedule().size(); ++g) {
    const StepPlan::Group& grp = plan.side_by_side_schedule()[g];
    int part = 0;
    for (const auto* nodes : {&grp.first, &grp.beside, &grp.pieces}) {
      for (int i : *nodes) group_of[i] = static_cast<int>(g), part_of[i] = part;
      ++part;
    }
  }
  const auto position = [&](int i) { return std::find(order.begin(), order.end(), i); };
  for (int i = 0; i < static_cast<int>(plan.nodes().size()); ++i)
    for (int d : plan.nodes()[i].deps) {
      const bool earlier_group = group_of[d] < group_of[i];
      const bool earlier_in_part =
          group_of[d] == group_of[i] && part_of[d] == part_of[i] && position(d) < position(i);
      EXPECT_TRUE(earlier_group || earlier_in_part)
          << plan.nodes()[d].name << " before " << plan.nodes()[i].name;
    }
  ASSERT_GE(groups.size(), 9u) << ::testing::PrintToString(groups);
  const std::vector<std::string> tail(groups.end() - 9, groups.end());
  EXPECT_EQ(tail,
            (std::vector<std::string>{
                "softmax_xent_backward", "dw_gemm3 | dx_gemm3", "relu_backward_bias_grad2", "adam3",
                "dw_gemm2 | dx_gemm2", "relu_backward_bias_grad1", "dw_gemm1 | dx_gemm1",
                "relu_backward_bias_grad0", "adam2,adam1 beside dw_gemm0,adam0 in pieces"}))
      << "groups: " << ::testing::PrintToString(groups);
  // 16 row blocks of dW0; Adam's 17th piece is the bias (and the padding).
  const auto node = [&](const std::string& name) {
    for (const PlanNode& n : plan.nodes())
      if (n.name == name) return n;
    ADD_FAILURE() << "no node " << name;
    return PlanNode{};
  };
  EXPECT_EQ(node("dw_gemm0").pieces, 16);
  EXPECT_EQ(node("adam0").pieces, 17);
  EXPECT_EQ(node("dw_gemm1").pieces, 0);
  EXPECT_EQ(node("adam1").pieces, 0);
}

// A hand-made pieces group on the CPU backend at 1, 2 and 3 threads: the
// deferred kernel runs once, every piece of both nodes exactly once, never
// their whole run(), and each piece of the follower after the same piece of
// the node it follows (its 5th piece, beyond the 4 it follows, at any time).
TEST(StepPlan, PiecesRunOnceEachAfterThePieceTheyFollow) {
  for (int threads : {1, 2, 3}) {
    auto be = make_cpu_backend({threads});
    std::atomic<int> clock{0}, wholes{0}, deferred_runs{0};
    std::vector<std::atomic<int>> gemm_at(4), adam_at(5), gemm_runs(4), adam_runs(5);
    StepPlan plan;
    PlanNode big = testing::kernel_node("big", 1, {}, [&] { deferred_runs.fetch_add(1); });
    big.bytes = StepPlan::kDeferBytes;
    plan.add(big);
    PlanNode g = testing::kernel_node("g", 1, {}, [&] { wholes.fetch_add(1); });
    g.kind = NodeKind::kGemm;
    g.pieces = 4;
    g.run_piece = [&](int i) {
      gemm_runs[i].fetch_add(1);
      gemm_at[i] = clock.fetch_add(1);
    };
    const int gi = plan.add(g);
    PlanNode a = testing::kernel_node("a", 1, {gi}, [&] { wholes.fetch_add(1); });
    a.pieces = 5;
    a.pieces_follow = gi;
    a.run_piece = [&](int i) {
      adam_runs[i].fetch_add(1);
      adam_at[i] = clock.fetch_add(1);
    };
    plan.add(a);
    ASSERT_EQ(plan.side_by_side_schedule().size(), 1u);
    EXPECT_EQ(plan.side_by_side_schedule()[0].beside, std::vector<int>{0});
    EXPECT_EQ(plan.side_by_side_schedule()[0].pieces, (std::vector<int>{1, 2}));
    plan.run(*be);
    EXPECT_EQ(wholes.load(), 0) << threads << " threads";
    EXPECT_EQ(deferred_runs.load(), 1) << threads << " threads";
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(adam_runs[i].load(), 1) << "piece " << i << ", " << threads << " threads";
      if (i < 4) {
        EXPECT_EQ(gemm_runs[i].load(), 1) << "piece " << i << ", " << threads << " threads";
        EXPECT_LT(gemm_at[i].load(), adam_at[i].load()) << "piece " << i;
      }
    }
  }
}

// A follower that also depends on what runs beside the pieces does not join
// them: it runs after the group. Pieces without run_piece, or following a
// node that is not a dependency, are refused.
TEST(StepPlan, PiecesRulesAreChecked) {
  StepPlan plan;
  PlanNode big = testing::kernel_node("big", 1, {});
  big.bytes = StepPlan::kDeferBytes;
  const int bi = plan.add(big);
  PlanNode g = testing::kernel_node("g", 1, {});
  g.kind = NodeKind::kGemm;
  g.pieces = 2;
  g.run_piece = [](int) {};
  const int gi = plan.add(g);
  PlanNode a = testing::kernel_node("a", 1, {gi, bi});
  a.pieces = 2;
  a.pieces_follow = gi;
  a.run_piece = [](int) {};
  plan.add(a);
  ASSERT_EQ(plan.side_by_side_schedule().size(), 2u);
  EXPECT_EQ(plan.side_by_side_schedule()[0].pieces, std::vector<int>{gi});
  EXPECT_EQ(plan.side_by_side_schedule()[1].first, std::vector<int>{gi + 1});

  PlanNode no_fn = testing::kernel_node("no_fn", 0, {});
  no_fn.pieces = 3;
  EXPECT_TRUE(testing::throws_error([&] { plan.add(no_fn); }, ExitCode::kFailure,
                                    {"no_fn", "no run_piece"}));
  PlanNode stranger = testing::kernel_node("stranger", 0, {});
  stranger.pieces = 2;
  stranger.run_piece = [](int) {};
  stranger.pieces_follow = gi;  // not among its deps
  EXPECT_TRUE(testing::throws_error([&] { plan.add(stranger); }, ExitCode::kFailure,
                                    {"stranger", "piece by piece"}));
}

// run_beside_pieces on the CPU backend: work() once, every piece once, at any
// thread count; refused while GEMM spans are recorded (two threads' stamps).
TEST(CpuBackend, RunBesidePiecesRunsWorkOnceAndEveryPieceOnce) {
  for (int threads : {1, 2, 3}) {
    auto be = make_cpu_backend({threads});
    std::atomic<int> work{0};
    std::vector<std::atomic<int>> runs(33);
    be->run_beside_pieces([&] { work.fetch_add(1); }, 33, [&](int i) { runs[i].fetch_add(1); });
    EXPECT_EQ(work.load(), 1) << threads << " threads";
    for (int i = 0; i < 33; ++i) EXPECT_EQ(runs[i].load(), 1) << i << ", " << threads << " threads";
    std::vector<GemmSpan> spans;
    be->set_gemm_spans(&spans);
    EXPECT_TRUE(testing::throws_error([&] { be->run_beside_pieces([] {}, 1, [](int) {}); },
                                      ExitCode::kFailure, {"GEMM spans"}));
    be->set_gemm_spans(nullptr);
  }
}

}  // namespace
}  // namespace mlp
