// StepPlan: one training step as a list of nodes (ops) with their data
// dependencies, in plain host code. Model builds it (Model::train_plan); run()
// issues it on a Backend: nodes on lane 1 go to the side lane (a second CUDA
// stream, forked from and joined back to the compute stream, so a captured
// graph gets the same fork/join), and a dependency that crosses lanes becomes
// an event record/wait. The CPU runs the same nodes without lanes, in the
// order of side_by_side_schedule(): independent GEMMs on two cores at once,
// and layer 0's dW with its Adam in pieces that both cores claim.
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
  // Optional: the same work as `pieces` parts, run_piece(0 .. pieces-1), that
  // may run in any order and on any thread and together do exactly what run()
  // does, bit for bit (layer 0's dW GEMM in its row blocks, Backend::gemm_rows,
  // and its Adam over each block's rows). 0: not split.
  int pieces = 0;
  std::function<void(int)> run_piece;
  // With pieces: node `pieces_follow` (one of deps) also has pieces, and piece
  // i of this node reads only piece i of it (i < its pieces) of everything
  // that node writes, so it may run as soon as that piece is done. -1: none.
  int pieces_follow = -1;
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

  // The CPU's schedule: groups of nodes run in order. A group runs its
  // `first` nodes in order; with a `beside` part, the two parts side by side
  // (Backend::run_side_by_side, each part's nodes in order on one thread);
  // with `pieces`, its nodes' pieces claimed by every thread while one thread
  // runs the `beside` nodes first (Backend::run_beside_pieces). Built from the
  // nodes' deps alone (lanes are a CUDA matter), so every dependency stays
  // ordered:
  // - two adjacent GEMM nodes on different lanes, the second not depending
  //   on the first (a layer's dW and dX), form a pair;
  // - a GEMM node with pieces (layer 0's dW, 16 row blocks at 784 inputs),
  //   with the nodes right after it that follow it piece by piece (its Adam),
  //   forms a pieces group: piece i runs the GEMM's block i, then Adam over
  //   those rows while they are in cache;
  // - a kernel that streams at least kDeferBytes (Adam over a big layer) is
  //   deferred until a pieces group comes and runs first on one core there,
  //   that core joining the pieces when it is done: Adam over the big layers
  //   on one core while the other starts on the GEMM, instead of both in turn
  //   on two cores (bound by memory bandwidth, Adam gains less from a second
  //   core than the GEMM). A node that depends on a deferred one, a GEMM
  //   without pieces, or the end of the plan runs the deferred nodes first, on
  //   their own. Moving a node later is safe because deps also name the
  //   earlier readers of what a node overwrites (Adam lists its weights' last
  //   reader), not only the writers of what it reads.
  struct Group {
    std::vector<int> first, beside, pieces;
  };
  static constexpr double kDeferBytes = 1 << 20;
  const std::vector<Group>& side_by_side_schedule() const;
  // Runs one group of side_by_side_schedule() as run() does (bench --kernels
  // times the CPU step group by group this way).
  void run_group(Backend& be, const Group& g) const;
  // "dw_gemm2 | dx_gemm2", "adam2,adam1 beside dw_gemm0,adam0 in pieces",
  // "bias_relu0": the group's nodes by name, parts as they run.
  std::string group_name(const Group& g) const;
  // Node i and node i + 1 form a dW/dX-style pair.
  bool pairs_with_next(int i) const;

 private:
  std::vector<Group> build_side_by_side_schedule() const;
  void run_side_by_side(Backend& be) const;

  std::vector<PlanNode> nodes_;
  mutable std::vector<Group> schedule_;  // side_by_side_schedule(), built on first use
};

}  // namespace mlp
