// The step plan (mlp/step_plan.h, Model::train_plan): its dependency structure
// (node count, critical-path length, which lane each node is on, that every
// hazard is ordered), the StepPlan bookkeeping on small hand-made plans, the
// fused ops' CPU references, and that the plan's step on the CPU gives the
// same bits as the old sequential forward/backward/update. The CPU's
// side-by-side schedule: tests/test_cpu_schedule.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "mlp/kernel_timing.h"
#include "mlp/model.h"
#include "mlp/step_plan.h"
#include "step_plan_testing.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::DeviceVec;
using testing::Net;
using testing::random_batch;
using testing::random_floats;

int find(const StepPlan& plan, const std::string& name) {
  for (std::size_t i = 0; i < plan.nodes().size(); ++i)
    if (plan.nodes()[i].name == name) return static_cast<int>(i);
  ADD_FAILURE() << "no node named " << name;
  return -1;
}

// True when `before` is an ancestor of `after` (through deps and lane order).
bool ordered(const StepPlan& plan, int before, int after) {
  if (before < 0 || after < 0) return false;
  std::vector<int> todo = {after};
  std::set<int> seen;
  while (!todo.empty()) {
    const int i = todo.back();
    todo.pop_back();
    for (int p : plan.predecessors(i)) {
      if (p == before) return true;
      if (seen.insert(p).second) todo.push_back(p);
    }
  }
  return false;
}

// The network's plan on the CPU: L = 4 layers. Lane 0 carries input
// conversion, the forward pass (one GEMM per layer, its bias and ReLU fused in:
// L; a backend without fuses_gemm_epilogue has a bias kernel after each GEMM,
// 2L), the loss (1) and the dX chain (dX GEMM + ReLU/bias-grad kernel for each
// layer above the first: 2(L-1)); then layer 0's dW GEMM and Adam end the
// step: 1 + L + 1 + 2(L-1) + 2 = 3L + 2 = 14 dependent nodes of 5L = 20.
// Adding any node back onto the critical path (a separate bias kernel or
// bias_grad, a second Adam launch, a dW GEMM on lane 0) makes this fail.
TEST(StepPlan, NetworkPlanHasTheShortCriticalPath) {
  Net net({784, 500, 500, 500, 10});
  const StepPlan plan = net.plan(100);
  EXPECT_EQ(plan.nodes().size(), 20u);
  EXPECT_EQ(plan.critical_path_nodes(), 14);
  int side = 0;
  for (const PlanNode& n : plan.nodes()) {
    const bool off_path = n.name.rfind("dw_gemm", 0) == 0 || n.name.rfind("adam", 0) == 0;
    EXPECT_EQ(n.lane, off_path ? 1 : 0) << n.name;
    side += n.lane;
    EXPECT_TRUE(n.run) << n.name;
    EXPECT_GT(n.kind == NodeKind::kGemm ? n.flops : n.bytes, 0.0) << n.name;
  }
  EXPECT_EQ(side, 8);
}

TEST(StepPlan, CriticalPathFollowsLayerCount) {
  for (const auto& [sizes, path] : std::vector<std::pair<std::vector<int64_t>, int>>{
           {{5, 3}, 5}, {{5, 7, 3}, 8}, {{9, 8, 7, 6, 5, 4}, 17}}) {
    Net net(sizes, 4);
    const StepPlan plan = net.plan(3);
    EXPECT_EQ(plan.critical_path_nodes(), path) << format_sizes(sizes);
    EXPECT_EQ(plan.nodes().size(), 5 * (sizes.size() - 1)) << format_sizes(sizes);
  }
}

// Every read-after-write and write-after-read the step has is ordered.
TEST(StepPlan, EveryHazardIsOrdered) {
  Net net({784, 500, 500, 500, 10});
  const StepPlan plan = net.plan(100);
  const int loss = find(plan, "softmax_xent_backward");
  for (int l = 0; l < 4; ++l) {
    const int dw = find(plan, "dw_gemm" + std::to_string(l));
    const int adam = find(plan, "adam" + std::to_string(l));
    const int fwd =
        find(plan, (l < 3 ? "forward_gemm_bias_relu" : "forward_gemm_bias") + std::to_string(l));
    // dY_l is final (masked, db_l written) before its dW GEMM reads it.
    const int dy = l == 3 ? loss : find(plan, "relu_backward_bias_grad" + std::to_string(l));
    EXPECT_TRUE(ordered(plan, dy, dw)) << l;
    // Adam reads dW_l and db_l, and Adam's counter advanced in the loss kernel.
    EXPECT_TRUE(ordered(plan, dw, adam)) << l;
    EXPECT_TRUE(ordered(plan, dy, adam)) << l;
    EXPECT_TRUE(ordered(plan, loss, adam)) << l;
    // Adam overwrites W_l only after its last reader: the forward GEMM and, above
    // layer 0, the dX GEMM.
    EXPECT_TRUE(ordered(plan, fwd, adam)) << l;
    if (l > 0) {
      const int dx = find(plan, "dx_gemm" + std::to_string(l));
      EXPECT_TRUE(ordered(plan, dx, adam)) << l;
      EXPECT_TRUE(ordered(plan, dy, dx)) << l;
      // The dX GEMM stays on the critical path: it does not wait for the side lane.
      EXPECT_FALSE(ordered(plan, dw, dx)) << l;
    }
  }
}

TEST(StepPlan, BookkeepingOnHandMadePlans) {
  StepPlan plan;
  const auto node = [](std::string name, int lane, std::vector<int> deps) {
    return testing::kernel_node(std::move(name), lane, std::move(deps));
  };
  const int a = plan.add(node("a", 0, {}));
  const int b = plan.add(node("b", 1, {a}));
  const int c = plan.add(node("c", 0, {}));  // after a by lane order only
  const int d = plan.add(node("d", 1, {c}));
  EXPECT_EQ(plan.predecessors(c), std::vector<int>({a}));
  EXPECT_EQ(plan.predecessors(d), std::vector<int>({b, c}));
  EXPECT_EQ(plan.critical_path_nodes(), 3);  // a -> c -> d
  double total = 0;
  EXPECT_EQ(plan.critical_path({1, 10, 1, 1}, &total), std::vector<int>({a, b, d}));
  EXPECT_EQ(total, 12.0);
  EXPECT_TRUE(testing::throws_error([&] { plan.add(node("e", 0, {7})); }, ExitCode::kFailure,
                                    {"not an earlier one"}));
  EXPECT_TRUE(
      testing::throws_error([&] { plan.add(node("f", 2, {})); }, ExitCode::kFailure, {"lane 2"}));
}

// ---- the fused ops' CPU references ---------------------------------------------

// The lane loop (what CUDA runs), driven on the CPU backend, whose lanes are
// only bookkeeping: nodes in index order, each on its lane, ending on lane 0.
TEST(StepPlan, RunOnLanesIssuesNodesInOrderAndEndsOnLaneZero) {
  auto be = make_cpu_backend({1});
  testing::LaneLog log(*be);
  log.plan.run_on_lanes(*be);
  EXPECT_EQ(log.seen, (std::vector<std::pair<std::string, int>>{{"a", 0}, {"b", 1}, {"c", 0}}));
  EXPECT_EQ(be->lane(), 0);
}

TEST(StepOps, ReluBackwardBiasGradIsReluBackwardThenBiasGrad) {
  // 100 x 500 (the step's own shape) runs on the pool's threads at 2 and 3
  // threads; 37 x 13 on the calling thread alone.
  for (const int threads : {1, 2, 3})
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{37, 13}, {100, 500}}) {
      auto be = make_cpu_backend({threads});
      const auto n = static_cast<std::size_t>(rows * cols);
      const auto grad = random_floats(n, 1);
      std::vector<float> act = random_floats(n, 2);
      for (auto& a : act) a = a > 0 ? a : 0;  // a ReLU output
      DeviceVec<float> g1(*be, grad), g2(*be, grad), a(*be, act);
      DeviceVec<float> db1(*be, std::vector<float>(static_cast<std::size_t>(cols), 9.0f));
      DeviceVec<float> db2(*be, std::vector<float>(static_cast<std::size_t>(cols)));
      be->relu_backward_bias_grad({g1.get(), rows, cols}, {a.get(), rows, cols}, db1.get());
      be->relu_backward({g2.get(), rows, cols}, {a.get(), rows, cols});
      be->bias_grad({g2.get(), rows, cols}, db2.get());
      const auto got = g1.download();
      EXPECT_EQ(got, g2.download()) << threads << " threads, " << rows << "x" << cols;
      EXPECT_EQ(db1.download(), db2.download()) << threads << " threads, " << rows << "x" << cols;
      int zeros = 0;
      for (std::size_t i = 0; i < n; ++i) zeros += act[i] > 0 ? 0 : (got[i] == 0.0f);
      EXPECT_GT(zeros, 0);
      EXPECT_TRUE(testing::throws_error(
          [&] {
            be->relu_backward_bias_grad({g1.get(), rows, cols}, {a.get(), cols, rows}, db1.get());
          },
          ExitCode::kFailure, {"relu_backward_bias_grad"}));
    }
}

TEST(StepOps, SoftmaxXentBackwardAddsBiasGradAndAdvancesTheCounterOnce) {
  auto be = make_cpu_backend({1});
  const int64_t rows = 29, cols = 10;
  const auto n = static_cast<std::size_t>(rows * cols);
  const auto logits = random_floats(n, 3, 3.0);
  std::vector<uint8_t> labels(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % cols);
  DeviceVec<float> z(*be, logits), d1(*be, std::vector<float>(n)), d2(*be, std::vector<float>(n));
  DeviceVec<uint8_t> lab(*be, labels);
  DeviceVec<double> m1(*be, {1.0, 2.0}), m2(*be, {1.0, 2.0});
  DeviceVec<float> db1(*be, std::vector<float>(cols)), db2(*be, std::vector<float>(cols));
  OptimizerState st;
  st.step = 41;
  DeviceVec<OptimizerState> state(*be, {st});
  be->softmax_xent_backward({z.get(), rows, cols}, lab.get(), {d1.get(), rows, cols}, db1.get(),
                            m1.get(), state.get());
  be->softmax_xent({z.get(), rows, cols}, lab.get(), d2.get(), m2.get());
  be->bias_grad({d2.get(), rows, cols}, db2.get());
  EXPECT_EQ(d1.download(), d2.download());
  EXPECT_EQ(db1.download(), db2.download());
  EXPECT_EQ(m1.download(), m2.download());
  EXPECT_EQ(state.download()[0].step, 42);
  be->softmax_xent_backward({z.get(), rows, cols}, lab.get(), {d1.get(), rows, cols}, db1.get(),
                            m1.get(), nullptr);
  EXPECT_EQ(state.download()[0].step, 42);
}

TEST(StepOps, AdamUpdateIsAdamStepWithoutTheIncrement) {
  auto be = make_cpu_backend({2});
  const std::size_t n = 1001;
  const auto p0 = random_floats(n, 4), g = random_floats(n, 5), m0 = random_floats(n, 6, 0.01);
  auto v0 = random_floats(n, 7, 0.01);
  for (auto& x : v0) x *= x;
  DeviceVec<float> p1(*be, p0), m1(*be, m0), v1(*be, v0), p2(*be, p0), m2(*be, m0), v2(*be, v0);
  DeviceVec<float> dg(*be, g);
  OptimizerState st;
  st.step = 6;
  DeviceVec<OptimizerState> s1(*be, {st}), s2(*be, {st});
  be->adam_step(p1.get(), dg.get(), m1.get(), v1.get(), n, s1.get());  // t = 7
  st.step = 7;
  DeviceVec<OptimizerState> s3(*be, {st});
  be->adam_update(p2.get(), dg.get(), m2.get(), v2.get(), n, s3.get());  // t = 7, no increment
  EXPECT_EQ(p1.download(), p2.download());
  EXPECT_EQ(m1.download(), m2.download());
  EXPECT_EQ(v1.download(), v2.download());
  EXPECT_EQ(s3.download()[0].step, 7);
  EXPECT_NE(p2.download(), p0);
}

TEST(StepOps, GemmBiasActIsGemmThenTheBiasOp) {
  // The CPU fuses the bias (+ ReLU) into each block of the GEMM, so its plan
  // has one forward node per layer. Shapes: one block; 100 rows in 2 blocks of
  // rows; 40 rows in blocks of columns (cpu::gemm_split).
  struct Shape {
    int64_t m, k, n;
  };
  for (const CpuGemm lib : {CpuGemm::kOpenblas, CpuGemm::kDefault})
    for (const int threads : {1, 2})
      for (const Shape s : {Shape{9, 17, 12}, Shape{100, 300, 200}, Shape{40, 600, 400}}) {
        auto be = make_cpu_backend({threads, lib});
        EXPECT_TRUE(be->fuses_gemm_epilogue());
        const auto x = random_floats(static_cast<std::size_t>(s.m * s.k), 8);
        const auto w = random_floats(static_cast<std::size_t>(s.k * s.n), 9);
        const auto b = random_floats(static_cast<std::size_t>(s.n), 10);
        DeviceVec<float> dx(*be, x), dw(*be, w), db(*be, b);
        for (bool relu : {true, false}) {
          DeviceVec<float> o1(*be, std::vector<float>(static_cast<std::size_t>(s.m * s.n), 3.0f));
          DeviceVec<float> o2(*be, std::vector<float>(static_cast<std::size_t>(s.m * s.n)));
          be->gemm_bias_act({dx.get(), s.m, s.k}, {dw.get(), s.k, s.n}, db.get(), relu,
                            {o1.get(), s.m, s.n});
          be->gemm(Trans::kNo, Trans::kNo, 1.0f, {dx.get(), s.m, s.k}, {dw.get(), s.k, s.n}, 0.0f,
                   {o2.get(), s.m, s.n});
          if (relu)
            be->bias_relu_forward({o2.get(), s.m, s.n}, db.get());
          else
            be->bias_forward({o2.get(), s.m, s.n}, db.get());
          const auto got = o1.download();
          EXPECT_EQ(got, o2.download()) << threads << " threads, " << s.m << "x" << s.n << relu;
          EXPECT_EQ(std::count(got.begin(), got.end(), 0.0f) > 0, relu);  // the ReLU did clip
        }
        EXPECT_TRUE(testing::throws_error(
            [&] {
              be->gemm_bias_act({dx.get(), s.m, s.k}, {dw.get(), s.n, s.k}, db.get(), true,
                                {dx.get(), s.m, s.n});
            },
            ExitCode::kFailure, {"gemm_bias_act"}));
      }
}

// ---- the plan's step is the old step ---------------------------------------------

TEST(StepPlan, PlanStepEqualsSequentialStepBitwise) {
  // Large enough that GEMMs split into blocks; 2 threads, so dW and dX run side by side.
  const std::vector<int64_t> sizes = {784, 256, 192, 10};
  const int64_t batch = 48;
  Net a(sizes, batch, 2), b(sizes, batch, 2);
  const auto init = initial_params(a.model.layout(), InitScheme::kHe, 7);
  a.model.set_params(init);
  b.model.set_params(init);
  Pcg32 rng(11, 3);
  for (int step = 0; step < 4; ++step) {
    const std::vector<uint8_t> host = random_batch(rng, batch, sizes[0]);
    for (Net* net : {&a, &b}) net->be->upload(net->input.data(), host.data(), host.size());
    a.model.train_step(a.images(), a.labels(), batch, a.metrics.as<double>());
    b.model.forward(b.images(), batch);
    b.model.backward(b.labels(), batch, b.metrics.as<double>());
    b.model.update();
  }
  const ModelState sa = a.model.state(), sb = b.model.state();
  EXPECT_EQ(sa.step, 4);
  EXPECT_EQ(sb.step, 4);
  EXPECT_EQ(sa.params, sb.params);
  EXPECT_EQ(sa.m, sb.m);
  EXPECT_EQ(sa.v, sb.v);
  EXPECT_NE(sa.params, init);
  std::vector<double> ma(2), mb(2);
  a.be->download(ma.data(), a.metrics.data(), 2 * sizeof(double));
  b.be->download(mb.data(), b.metrics.data(), 2 * sizeof(double));
  EXPECT_EQ(ma, mb);
  EXPECT_GT(ma[kMetricLossSum], 0.0);
}

// bench --kernels on the CPU: one row per plan node, the critical path marked
// and no longer than every node in a row.
TEST(KernelTiming, GemmSharesAreRestatedAgainstANewPeakAndKernelSharesKept) {
  KernelReport r;
  KernelTiming gemm, kernel;
  gemm.kind = NodeKind::kGemm;
  gemm.achieved = 150.0;
  gemm.of_peak = 0.75;  // of 200
  kernel.kind = NodeKind::kKernel;
  kernel.achieved = 30.0;
  kernel.of_peak = 0.5;  // of a bandwidth peak, which the CPU peak does not touch
  r.nodes = {gemm, kernel};
  GroupTiming g;
  g.gemm_gflops = 120.0;
  g.of_peak = 0.6;
  r.groups = {g};
  restate_gemm_peak(r, 240.0);
  EXPECT_DOUBLE_EQ(r.nodes[0].of_peak, 150.0 / 240.0);
  EXPECT_DOUBLE_EQ(r.nodes[1].of_peak, 0.5);
  EXPECT_DOUBLE_EQ(r.groups[0].of_peak, 0.5);
  restate_gemm_peak(r, 0.0);  // unknown: nothing to restate against
  EXPECT_DOUBLE_EQ(r.nodes[0].of_peak, 150.0 / 240.0);
}

TEST(KernelTiming, ReportsEveryNodeAndTheCriticalPath) {
  auto be = make_cpu_backend({1});
  BenchConfig cfg;
  cfg.sizes = {784, 32, 32, 10};
  cfg.batch = 16;
  cfg.steps = 2;
  cfg.warmup = 1;
  cfg.repeats = 1;
  const Dataset data = synthetic_dataset(5, 64);
  PeakInfo peak;
  peak.gflops = 100;
  peak.gbps = 10;
  const KernelReport r = time_kernels(*be, data, cfg, peak);
  ASSERT_EQ(r.nodes.size(), 15u);  // 5 a layer, 3L + 2 = 11 in a row (see above)
  EXPECT_EQ(r.critical_path_nodes, 11);
  EXPECT_EQ(r.device, "cpu");
  int critical = 0;
  for (const KernelTiming& k : r.nodes) {
    EXPECT_TRUE(k.us >= 0 && std::isfinite(k.us)) << k.name;
    EXPECT_TRUE(k.achieved >= 0 && std::isfinite(k.achieved)) << k.name;
    critical += k.critical;
  }
  EXPECT_GE(critical, 1);
  EXPECT_LE(critical, r.critical_path_nodes);
  EXPECT_TRUE(r.critical_path_us <= r.sum_us + 1e-9) << r.critical_path_us << " > " << r.sum_us;
  EXPECT_GT(r.sum_us, 0.0);
  EXPECT_GT(r.step_us, 0.0);
  const std::string table = format_kernel_report(r);
  EXPECT_NE(table.find("dw_gemm0"), std::string::npos) << table;
  EXPECT_NE(table.find("critical path"), std::string::npos) << table;
  // The CPU's schedule, group by group: every node in exactly one group.
  ASSERT_FALSE(r.groups.empty());
  std::vector<std::string> grouped, planned;
  double sum = 0;
  for (const GroupTiming& g : r.groups) {
    EXPECT_TRUE(g.us >= 0 && std::isfinite(g.us)) << g.name;
    EXPECT_TRUE(g.gemm_gflops >= 0 && std::isfinite(g.gemm_gflops)) << g.name;
    sum += g.us;
    std::string token;
    for (const char c : g.name + " ") {
      if (c != ' ' && c != ',' && c != '|') {
        token += c;
        continue;
      }
      if (!token.empty() && token != "beside" && token != "in" && token != "pieces")
        grouped.push_back(token);
      token.clear();
    }
  }
  for (const KernelTiming& k : r.nodes) planned.push_back(k.name);
  std::sort(grouped.begin(), grouped.end());
  std::sort(planned.begin(), planned.end());
  EXPECT_EQ(grouped, planned);
  EXPECT_TRUE(std::abs(sum - r.groups_us) <= 1e-9 * (1 + sum)) << sum << " vs " << r.groups_us;
  EXPECT_NE(table.find("cpu schedule"), std::string::npos) << table;
}

}  // namespace
}  // namespace mlp
