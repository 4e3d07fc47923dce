// The CPU's side-by-side schedule of the step plan (StepPlan::
// side_by_side_schedule, Backend::run_side_by_side): which nodes pair, that
// Adam of the big layers runs beside layer 0's dW GEMM, that every dependency
// stays ordered, that the CPU runs plans without lanes, and that the step's
// bits do not depend on the thread count.
#include <gtest/gtest.h>

#include <algorithm>
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
  StepPlan plan;
  std::vector<std::pair<std::string, int>> seen;
  const auto node = [&](std::string name, int lane, std::vector<int> deps) {
    return PlanNode{
        name, lane, std::move(deps), NodeKind::kKernel, 0, 1, [&seen, name, b = be.get()] {
          seen.emplace_back(name, b->lane());
        }};
  };
  plan.add(node("a", 0, {}));
  plan.add(node("b", 1, {0}));
  plan.add(node("c", 0, {}));
  plan.run(*be);
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, int>>{{"a", 0}, {"b", 0}, {"c", 0}}));
  EXPECT_EQ(be->lane(), 0);
}

// The CPU's schedule of the network's step: each layer's dW and dX side by
// side; the Adam updates of layers 2 and 1 deferred and run on one core beside
// layer 0's dW GEMM; small kernels and the rest in plan order, on their own.
TEST(StepPlan, CpuScheduleRunsAdamBesideTheLoneGemm) {
  Net net({784, 500, 500, 500, 10});
  const StepPlan plan = net.plan(100);
  std::vector<std::string> groups;
  std::vector<int> seen(plan.nodes().size(), 0);
  const auto names = [&](const std::vector<int>& part) {
    std::string out;
    for (int i : part) {
      out += (out.empty() ? "" : ",") + plan.nodes()[i].name;
      ++seen[i];
    }
    return out;
  };
  std::vector<int> order;
  for (const StepPlan::Group& g : plan.side_by_side_schedule()) {
    const std::string first = names(g.first);
    groups.push_back(g.beside.empty() ? first : first + " | " + names(g.beside));
    order.insert(order.end(), g.first.begin(), g.first.end());
    order.insert(order.end(), g.beside.begin(), g.beside.end());
  }
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << plan.nodes()[i].name;
  // Every dependency runs in an earlier group, or earlier in the same part.
  std::vector<int> group_of(plan.nodes().size()), part_of(plan.nodes().size());
  for (std::size_t g = 0; g < plan.side_by_side_schedule().size(); ++g) {
    const StepPlan::Group& grp = plan.side_by_side_schedule()[g];
    for (int i : grp.first) group_of[i] = static_cast<int>(g), part_of[i] = 0;
    for (int i : grp.beside) group_of[i] = static_cast<int>(g), part_of[i] = 1;
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
  ASSERT_GE(groups.size(), 10u) << ::testing::PrintToString(groups);
  const std::vector<std::string> tail(groups.end() - 10, groups.end());
  EXPECT_EQ(tail,
            (std::vector<std::string>{
                "softmax_xent_backward", "dw_gemm3 | dx_gemm3", "relu_backward_bias_grad2", "adam3",
                "dw_gemm2 | dx_gemm2", "relu_backward_bias_grad1", "dw_gemm1 | dx_gemm1",
                "relu_backward_bias_grad0", "adam2,adam1 | dw_gemm0", "adam0"}))
      << "groups: " << ::testing::PrintToString(groups);
}

}  // namespace
}  // namespace mlp
