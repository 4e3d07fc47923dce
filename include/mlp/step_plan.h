// StepPlan: one training step as a list of nodes (ops) with their data
// dependencies, in plain host code. Model builds it (Model::train_plan); run()
// issues it on a Backend: nodes on lane 1 go to the side lane (a second CUDA
// stream, forked from and joined back to the compute stream, so a captured
// graph gets the same fork/join), and a dependency that crosses lanes becomes
// an event record/wait. The CPU runs the same nodes without lanes, in the
// order of side_by_side_schedule(): independent GEMMs, and Adam beside a GEMM,
// on two cores at once.
//
// The plan is also what `bench --kernels` times node by node and what the tests
// check: critical_path_nodes() is the longest chain of dependent nodes (data
// dependencies plus each lane's issue order), i.e. the launches one step has to
// wait for one after another.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mlp/backend.h"

namespace mlp {

enum class NodeKind { kGemm, kKernel };

struct PlanNode {
  std::string name;  // as bench --kernels and the NVTX range print it
  int lane = 0;      // 0: compute stream (the dX chain); 1: side lane
  // Earlier nodes whose output this node reads or overwrites, or that read what
  // it overwrites (Adam: its weights' last reader).
  std::vector<int> deps;
  NodeKind kind = NodeKind::kKernel;
  double flops = 0;  // per run, for achieved GFLOP/s (GEMMs)
  double bytes = 0;  // per run, minimum DRAM traffic, for achieved GB/s (kernels)
  std::function<void()> run;
};

class StepPlan {
 public:
  // Appends a node; every dependency must name an earlier node. Returns its index.
  int add(PlanNode node);
  const std::vector<PlanNode>& nodes() const { return nodes_; }
  // Direct predecessors of node i: its deps plus the previous node on its lane.
  std::vector<int> predecessors(int i) const;
  // Length (in nodes) of the longest dependent chain.
  int critical_path_nodes() const;
  // The longest chain by weight (weight[i]: node i's time), its total in *total;
  // returns the node indices along it, first to last.
  std::vector<int> critical_path(const std::vector<double>& weight, double* total) const;
  // Runs the step on `be`: on its lanes (run_on_lanes), or, where the backend
  // prefers side-by-side work (Backend::prefers_side_by_side: the CPU), in the
  // order of side_by_side_schedule(), without lanes.
  void run(Backend& be) const;
  // Issues every node on `be` in index order (a valid topological order):
  // forks lane 1 from lane 0, waits across lanes only where a dependency
  // crosses and is not already covered, joins lane 1 back, ends on lane 0.
  void run_on_lanes(Backend& be) const;

  // The CPU's schedule: groups of nodes run in order; a group with a `beside`
  // part runs its two parts through Backend::run_side_by_side, each part's
  // nodes in order on one thread. Built from the nodes' deps alone (lanes are
  // a CUDA matter), so every dependency stays ordered:
  // - two adjacent GEMM nodes on different lanes, the second not depending
  //   on the first (a layer's dW and dX), form a pair;
  // - a kernel that streams at least kDeferBytes (Adam over a big layer) is
  //   deferred until a lone GEMM comes (layer 0's dW) and runs on one core
  //   beside it: on 2 cores Adam took as long as on 1 (it is bound by memory
  //   bandwidth), so beside a GEMM it costs almost nothing. A node that
  //   depends on a deferred one, or the end of the plan, runs the deferred
  //   nodes first, on their own. Moving a node later is safe because deps
  //   also name the earlier readers of what a node overwrites (Adam lists
  //   its weights' last reader), not only the writers of what it reads.
  struct Group {
    std::vector<int> first, beside;
  };
  static constexpr double kDeferBytes = 1 << 20;
  const std::vector<Group>& side_by_side_schedule() const;
  // Node i and node i + 1 form a dW/dX-style pair.
  bool pairs_with_next(int i) const;

 private:
  std::vector<Group> build_side_by_side_schedule() const;
  void run_side_by_side(Backend& be) const;

  std::vector<PlanNode> nodes_;
  mutable std::vector<Group> schedule_;  // side_by_side_schedule(), built on first use
};

}  // namespace mlp
