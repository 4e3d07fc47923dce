// The step plan on the GPU: the fused kernels against the CPU reference (odd
// and MNIST shapes, cuda_testing.h's one tolerance formula), and the captured
// graph's structure: its node count and that its longest dependent chain is
// the plan's critical path, i.e. the dW GEMMs and Adam updates really run on a
// forked branch. (Forked graph == eager launches bitwise and 20 steps == the
// CPU's losses: test_cuda_training.cpp, whose train_step is the plan.)
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "cuda/cuda_stream.h"  // defines: graph_handle
#include "cuda_testing.h"
#include "mlp/model.h"
#include "mlp/rng.h"

namespace mlp {
namespace {

using cuda_testing::all_close;
using cuda_testing::CudaTest;
using cuda_testing::kUnitRoundoff;
using testing::DeviceVec;
using testing::random_floats;

struct Shape {
  int64_t rows, cols;
};

// ---- ReLU backward + bias gradient ------------------------------------------------
// The mask is exact (0/0). db: both sides sum the same masked values in
// different orders: atol_c = 2 * rows * u * sum_r |g_rc|, rtol 0 (as bias_grad).
TEST_F(CudaTest, ReluBackwardBiasGradMatchesCpu) {
  for (const Shape s : std::vector<Shape>{{7, 13}, {1, 1}, {333, 777}, {100, 500}, {4096, 500}}) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const auto grad = random_floats(n, 51);
    auto act = random_floats(n, 52);
    for (auto& a : act) a = a > 0 ? a : 0;
    const auto run = [&](Backend& be) {
      DeviceVec<float> g(be, grad), a(be, act), db(be, std::vector<float>(s.cols, 5.0f));
      be.relu_backward_bias_grad({g.get(), s.rows, s.cols}, {a.get(), s.rows, s.cols}, db.get());
      return std::pair{g.download(), db.download()};
    };
    const auto [want_g, want_db] = run(cpu());
    const auto [got_g, got_db] = run(gpu());
    const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    EXPECT_TRUE(all_close(got_g, want_g, 0.0, 0.0)) << what;
    std::vector<double> atol(static_cast<std::size_t>(s.cols), 0.0);
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c)
        atol[c] += 2.0 * static_cast<double>(s.rows) * kUnitRoundoff *
                   std::abs(want_g[static_cast<std::size_t>(r * s.cols + c)]);
    EXPECT_TRUE(all_close(got_db, want_db, atol, 0.0)) << what;
  }
}

// ---- softmax cross-entropy with the bias gradient, over many blocks ----------------
// dlogits: atol 1e-6/rows, rtol 1e-5 and the loss sum atol 1e-5*rows, rtol
// 1e-5 (as SoftmaxXentMatchesCpu); correct count and the step counter exact.
// db_c sums rows values each within that dlogits tolerance, in another order:
// atol_c = sum_r (1e-6/rows + 1e-5 |d_rc|) + 2 * rows * u * sum_r |d_rc|.
// 5000 rows: more rows than blocks * warps, so blocks loop.
TEST_F(CudaTest, SoftmaxXentBackwardMatchesCpu) {
  for (const Shape s : std::vector<Shape>{
           {1, 1}, {7, 13}, {33, 256}, {100, 10}, {1000, 10}, {4096, 10}, {5000, 10}}) {
    const auto n = static_cast<std::size_t>(s.rows * s.cols);
    const auto logits = random_floats(n, 61, 3.0);
    std::vector<uint8_t> labels(static_cast<std::size_t>(s.rows));
    for (std::size_t i = 0; i < labels.size(); ++i)
      labels[i] = static_cast<uint8_t>((i * 7 + 3) % static_cast<std::size_t>(s.cols));
    struct Out {
      std::vector<float> d, db;
      std::vector<double> m;
      int64_t step;
    };
    const auto run = [&](Backend& be) {
      DeviceVec<float> z(be, logits), d(be, std::vector<float>(n, 7.0f));
      DeviceVec<float> db(be, std::vector<float>(s.cols, 7.0f));
      DeviceVec<uint8_t> lab(be, labels);
      DeviceVec<double> m(be, {1.5, 2.0});
      OptimizerState st;
      st.step = 9;
      DeviceVec<OptimizerState> state(be, {st});
      // Twice: the second launch must find the workspace's ticket reset.
      for (int k = 0; k < 2; ++k)
        be.softmax_xent_backward({z.get(), s.rows, s.cols}, lab.get(), {d.get(), s.rows, s.cols},
                                 db.get(), m.get(), state.get());
      return Out{d.download(), db.download(), m.download(), state.download()[0].step};
    };
    const Out want = run(cpu()), got = run(gpu());
    const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    const double rows = static_cast<double>(s.rows);
    EXPECT_TRUE(all_close(got.d, want.d, 1e-6 / rows, 1e-5)) << what;
    std::vector<double> atol(static_cast<std::size_t>(s.cols), 0.0);
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c) {
        const double d = std::abs(want.d[static_cast<std::size_t>(r * s.cols + c)]);
        atol[c] += 1e-6 / rows + 1e-5 * d + 2.0 * rows * kUnitRoundoff * d;
      }
    EXPECT_TRUE(all_close(got.db, want.db, atol, 0.0)) << what;
    EXPECT_TRUE(testing::near(got.m[kMetricLossSum], want.m[kMetricLossSum], 2e-5 * rows, 1e-5))
        << what;
    EXPECT_EQ(got.m[kMetricCorrect], want.m[kMetricCorrect]) << what;
    EXPECT_EQ(want.step, 11);
    EXPECT_EQ(got.step, 11) << what;
  }
}

// ---- Adam without the increment ------------------------------------------------------
// As AdamMatchesCpu: atol 1e-9, rtol 1e-6; the counter must not move. Offset 1
// makes the arrays unaligned (the scalar kernel), offset 0 the float4 one.
TEST_F(CudaTest, AdamUpdateMatchesCpu) {
  const int64_t network_floats = ParamLayout({784, 500, 500, 500, 10}).total_floats();
  for (int64_t n : {int64_t{1}, int64_t{12}, int64_t{13}, int64_t{1000}, network_floats})
    for (int64_t offset : {int64_t{0}, int64_t{1}}) {
      const auto sn = static_cast<std::size_t>(n + offset);
      auto v0 = random_floats(sn, 73, 0.01);
      for (auto& x : v0) x = x * x;
      const auto run = [&](Backend& be) {
        DeviceVec<float> p(be, random_floats(sn, 71, 0.1)), m(be, random_floats(sn, 72, 0.01));
        DeviceVec<float> v(be, v0), g(be, random_floats(sn, 74));
        OptimizerState st;
        st.step = 5;
        DeviceVec<OptimizerState> state(be, {st});
        be.adam_update(p.get() + offset, g.get() + offset, m.get() + offset, v.get() + offset, n,
                       state.get());
        return std::tuple{p.download(), m.download(), v.download(), state.download()[0].step};
      };
      const auto [wp, wm, wv, wstep] = run(cpu());
      const auto [gp, gm, gv, gstep] = run(gpu());
      const std::string what = "n " + std::to_string(n) + " offset " + std::to_string(offset);
      EXPECT_TRUE(all_close(gp, wp, 1e-9, 1e-6)) << what;
      EXPECT_TRUE(all_close(gm, wm, 1e-9, 1e-6)) << what;
      EXPECT_TRUE(all_close(gv, wv, 1e-9, 1e-6)) << what;
      EXPECT_EQ(wstep, 5);
      EXPECT_EQ(gstep, 5) << what;
    }
}

// ---- one plan step against the CPU's plan step ---------------------------------------
// As OneStepMatchesCpuLossGradientsAndUpdate (test_cuda_training.cpp), but
// through train_step, i.e. the fused kernels and both lanes: loss sum atol
// 1e-4, rtol 1e-5; correct count exact; every weight and bias gradient tensor
// T: atol 1e-5 * max|T|, rtol 1e-4; both counters at 1.
TEST_F(CudaTest, PlanStepGradientsMatchCpu) {
  const std::vector<int64_t> sizes = {784, 500, 500, 500, 10};
  const int64_t batch = 100;
  std::vector<uint8_t> bytes(static_cast<std::size_t>(batch * 785));
  Pcg32 rng(17, 1);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<uint8_t>(i < static_cast<std::size_t>(batch * 784) ? rng.below(256)
                                                                              : rng.below(10));
  struct Out {
    std::vector<float> grads;
    std::vector<double> metrics;
    int64_t step;
  };
  const auto run = [&](Backend& be) {
    Model model(be, sizes, batch, AdamHyper{}, false);
    model.set_params(initial_params(model.layout(), InitScheme::kHe, 5));
    DeviceVec<uint8_t> input(be, bytes);
    DeviceVec<double> metrics(be, {0.0, 0.0});
    model.train_step(input.get(), input.get() + batch * 784, batch, metrics.get());
    std::vector<float> g(static_cast<std::size_t>(model.layout().total_floats()));
    be.download(g.data(), model.grads(), g.size() * sizeof(float));
    return std::make_pair(Out{g, metrics.download(), model.state().step}, model.layout());
  };
  const auto [want, layout] = run(cpu());
  const auto got = run(gpu()).first;
  EXPECT_TRUE(testing::near(got.metrics[kMetricLossSum], want.metrics[kMetricLossSum], 1e-4, 1e-5));
  EXPECT_EQ(got.metrics[kMetricCorrect], want.metrics[kMetricCorrect]);
  EXPECT_EQ(want.step, 1);
  EXPECT_EQ(got.step, 1);
  for (int64_t l = 0; l < layout.layers(); ++l)
    for (const auto& [off, len, what] :
         {std::tuple{layout.weight_offset(l), layout.fan_in(l) * layout.fan_out(l), "W"},
          std::tuple{layout.bias_offset(l), layout.fan_out(l), "b"}}) {
      const std::vector<float> gw(want.grads.begin() + off, want.grads.begin() + off + len);
      const std::vector<float> gg(got.grads.begin() + off, got.grads.begin() + off + len);
      EXPECT_TRUE(all_close(gg, gw, 1e-5 * cuda_testing::max_abs(gw), 1e-4)) << what << l;
    }
}

// ---- --gemm lt: the forward GEMM with the bias/ReLU epilogue ------------------------------
// Against the CPU's GEMM + bias op with the GEMM tolerance (test_cuda_ops.cpp):
// atol_ij = 2 * k * u * (|x| |w|)_ij + 4u |bias_j| (the bias add rounds once
// more), rtol 0; the ReLU is exact. Where cuBLASLt has no algorithm the op
// falls back and must still match. The plan then has one forward node per layer.
// Each case runs on 256-byte aligned buffers (cudaMalloc's) and on buffers 16
// floats in, the 64-byte boundary the flat parameter buffer puts tensors on:
// cuBLASLt's heuristics assume 256 unless told the alignment.
TEST_F(CudaTest, LtEpilogueGemmMatchesCpuAndShortensThePlan) {
  CudaOptions opt;
  opt.gemm_lt = true;
  const auto lt = make_cuda_backend(opt);
  ASSERT_TRUE(lt->fuses_gemm_epilogue());
  struct Case {
    int64_t m, k, n;
  };
  for (const Case c :
       std::vector<Case>{{100, 784, 500}, {100, 500, 10}, {7, 13, 5}, {4096, 500, 500}})
    for (bool relu : {true, false})
      for (const std::size_t shift : {std::size_t{0}, std::size_t{16}}) {
        const auto x = random_floats(static_cast<std::size_t>(c.m * c.k), 81);
        const auto w = random_floats(static_cast<std::size_t>(c.k * c.n), 82, 0.1);
        const auto b = random_floats(static_cast<std::size_t>(c.n), 83);
        const auto shifted = [shift](const std::vector<float>& v) {
          std::vector<float> out(shift, 0.0f);
          out.insert(out.end(), v.begin(), v.end());
          return out;
        };
        const auto run = [&](Backend& be) {
          DeviceVec<float> dx(be, shifted(x)), dw(be, shifted(w)), db(be, shifted(b));
          DeviceVec<float> out(be, std::vector<float>(shift + static_cast<std::size_t>(c.m * c.n)));
          be.gemm_bias_act({dx.get() + shift, c.m, c.k}, {dw.get() + shift, c.k, c.n},
                           db.get() + shift, relu, {out.get() + shift, c.m, c.n});
          std::vector<float> got = out.download();
          got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(shift));
          return got;
        };
        const auto want = run(cpu()), got = run(*lt);
        std::vector<double> atol(want.size());
        for (int64_t i = 0; i < c.m; ++i)
          for (int64_t j = 0; j < c.n; ++j) {
            double mag = 0;
            for (int64_t p = 0; p < c.k; ++p)
              mag += std::abs(static_cast<double>(x[i * c.k + p]) * w[p * c.n + j]);
            atol[i * c.n + j] = 2.0 * static_cast<double>(c.k) * kUnitRoundoff * mag +
                                4 * kUnitRoundoff * std::abs(b[j]);
          }
        EXPECT_TRUE(all_close(got, want, atol, 0.0))
            << c.m << "x" << c.k << "x" << c.n << (relu ? " relu" : "") << ", buffers " << shift
            << " floats in";
      }
  Model model(*lt, {784, 500, 500, 500, 10}, 100, AdamHyper{}, false);
  Buffer input = lt->alloc(100 * 785);
  DeviceVec<double> metrics(*lt, {0.0, 0.0});
  const StepPlan plan =
      model.train_plan(input.as<uint8_t>(), input.as<uint8_t>() + 78400, 100, metrics.get());
  EXPECT_EQ(plan.nodes().size(), 20u);
  EXPECT_EQ(plan.critical_path_nodes(), 14);
}

// ---- the captured graph ----------------------------------------------------------------
// Node count: one kernel node per plan node when each cuBLAS call is one kernel;
// cuBLAS may add a kernel (a split-K reduction) or a memset to a GEMM, so the
// count is at least the plan's and the extra nodes are reported. The longest
// chain of dependent nodes may exceed the plan's critical path by at most those
// extras; an unforked, serial graph (26 nodes in a row before the plan) fails.
TEST_F(CudaTest, CapturedStepIsForkedWithThePlansCriticalPath) {
  const std::vector<int64_t> sizes = {784, 500, 500, 500, 10};
  const int64_t batch = 100;
  Model model(gpu(), sizes, batch, AdamHyper{}, false);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, 3));
  Buffer input = gpu().alloc(static_cast<std::size_t>(batch * (784 + 1)));
  DeviceVec<double> metrics(gpu(), {0.0, 0.0});
  const uint8_t* images = input.as<uint8_t>();
  const uint8_t* labels = images + batch * 784;
  model.train_step(images, labels, batch, metrics.get());  // eager first, as the Trainer
  gpu().synchronize();
  const StepPlan plan = model.train_plan(images, labels, batch, metrics.get());
  const auto graph = gpu().capture([&] { model.train_step(images, labels, batch, metrics.get()); });
  cudaGraph_t g = cuda::graph_handle(*graph);

  std::size_t count = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &count), cudaSuccess);
  std::vector<cudaGraphNode_t> nodes(count);
  ASSERT_EQ(cudaGraphGetNodes(g, nodes.data(), &count), cudaSuccess);
  std::size_t kernels = 0;
  for (cudaGraphNode_t n : nodes) {
    cudaGraphNodeType type{};
    ASSERT_EQ(cudaGraphNodeGetType(n, &type), cudaSuccess);
    kernels += type == cudaGraphNodeTypeKernel;
  }
  std::size_t edge_count = 0;
  ASSERT_EQ(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &edge_count), cudaSuccess);
  std::vector<cudaGraphNode_t> from(edge_count), to(edge_count);
  ASSERT_EQ(cudaGraphGetEdges(g, from.data(), to.data(), nullptr, &edge_count), cudaSuccess);

  // Longest chain, in nodes, over the DAG (Kahn order).
  std::map<cudaGraphNode_t, std::vector<cudaGraphNode_t>> out;
  std::map<cudaGraphNode_t, int> indegree, depth;
  for (cudaGraphNode_t n : nodes) indegree[n] = 0, depth[n] = 1;
  for (std::size_t i = 0; i < edge_count; ++i) {
    out[from[i]].push_back(to[i]);
    ++indegree[to[i]];
  }
  std::vector<cudaGraphNode_t> ready;
  for (cudaGraphNode_t n : nodes)
    if (indegree[n] == 0) ready.push_back(n);
  int longest = 0;
  std::size_t visited = 0;
  while (!ready.empty()) {
    cudaGraphNode_t n = ready.back();
    ready.pop_back();
    ++visited;
    longest = std::max(longest, depth[n]);
    for (cudaGraphNode_t m : out[n]) {
      depth[m] = std::max(depth[m], depth[n] + 1);
      if (--indegree[m] == 0) ready.push_back(m);
    }
  }
  const auto plan_nodes = plan.nodes().size();
  const int extra = static_cast<int>(count) - static_cast<int>(plan_nodes);
  std::printf(
      "[ info ] graph: %zu nodes (%zu kernels), %zu edges, longest chain %d; plan: %zu "
      "nodes, critical path %d\n",
      count, kernels, edge_count, longest, plan_nodes, plan.critical_path_nodes());
  EXPECT_EQ(visited, count) << "the graph has a cycle?";
  EXPECT_GE(kernels, plan_nodes);
  EXPECT_GE(extra, 0);
  EXPECT_GE(longest, plan.critical_path_nodes());
  EXPECT_LE(longest, plan.critical_path_nodes() + extra);
  EXPECT_LT(longest, static_cast<int>(count)) << "the graph is one chain: no fork";
}

}  // namespace
}  // namespace mlp
