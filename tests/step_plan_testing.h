// Helpers for the step-plan tests (test_step_plan.cpp, test_cpu_schedule.cpp):
// a Model on a CPU backend with its input and metrics buffers, and random
// batches in that input's layout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mlp/backend.h"
#include "mlp/model.h"
#include "mlp/rng.h"
#include "mlp/step_plan.h"

namespace mlp::testing {

// A batch as Net's input buffer holds it: batch x inputs pixel bytes, then batch labels.
inline std::vector<uint8_t> random_batch(Pcg32& rng, int64_t batch, int64_t inputs) {
  std::vector<uint8_t> host(static_cast<std::size_t>(batch * (inputs + 1)));
  for (std::size_t i = 0; i < host.size(); ++i)
    host[i] = static_cast<uint8_t>(i < static_cast<std::size_t>(batch * inputs) ? rng.below(256)
                                                                                : rng.below(10));
  return host;
}

// A hand-made kernel node (1 byte, no pieces) for plan bookkeeping tests.
inline PlanNode kernel_node(
    std::string name, int lane, std::vector<int> deps, std::function<void()> run = [] {}) {
  PlanNode node;
  node.name = std::move(name);
  node.lane = lane;
  node.deps = std::move(deps);
  node.bytes = 1;
  node.run = std::move(run);
  return node;
}

// Nodes a (lane 0), b (lane 1, after a) and c (lane 0), each recording its
// name and the backend's selected lane when it runs: what issuing a plan
// does with lanes.
struct LaneLog {
  std::vector<std::pair<std::string, int>> seen;
  StepPlan plan;
  explicit LaneLog(const Backend& be) {
    const auto node = [&](std::string name, int lane, std::vector<int> deps) {
      return kernel_node(name, lane, std::move(deps),
                         [this, name, b = &be] { seen.emplace_back(name, b->lane()); });
    };
    plan.add(node("a", 0, {}));
    plan.add(node("b", 1, {0}));
    plan.add(node("c", 0, {}));
  }
  LaneLog(const LaneLog&) = delete;  // the nodes point at this one's `seen`
  LaneLog& operator=(const LaneLog&) = delete;
};

struct Net {
  std::unique_ptr<Backend> be;
  Buffer input, metrics;
  Model model;
  explicit Net(std::vector<int64_t> sizes, int64_t batch = 100, int threads = 1,
               CpuGemm gemm = CpuGemm::kDefault)
      : be(make_cpu_backend({threads, gemm})),
        model(*be, std::move(sizes), batch, AdamHyper{}, false) {
    input = be->alloc(static_cast<std::size_t>(batch * (model.inputs() + 1)));
    metrics = be->alloc(kMetricCount * sizeof(double));
  }
  const uint8_t* images() const { return input.as<uint8_t>(); }
  const uint8_t* labels() const { return images() + model.max_batch() * model.inputs(); }
  StepPlan plan(int64_t batch) {
    return model.train_plan(images(), labels(), batch, metrics.as<double>());
  }
};

}  // namespace mlp::testing
