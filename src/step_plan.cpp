// StepPlan (see mlp/step_plan.h): bookkeeping and the two-lane issue loop.
#include "mlp/step_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "mlp/error.h"

namespace mlp {

int StepPlan::add(PlanNode node) {
  const int index = static_cast<int>(nodes_.size());
  if (node.lane < 0 || node.lane >= Backend::kLanes)
    throw Error(ExitCode::kFailure,
                fmt::format("step plan: node {} on lane {}", node.name, node.lane));
  for (int d : node.deps)
    if (d < 0 || d >= index)
      throw Error(
          ExitCode::kFailure,
          fmt::format("step plan: node {} depends on node {}, not an earlier one", node.name, d));
  if (node.pieces < 0 || (node.pieces > 0 && !node.run_piece))
    throw Error(ExitCode::kFailure, fmt::format("step plan: node {} has {} pieces and no run_piece",
                                                node.name, node.pieces));
  if (node.pieces_follow >= 0) {
    const int f = node.pieces_follow;
    if (node.pieces == 0 || std::find(node.deps.begin(), node.deps.end(), f) == node.deps.end() ||
        nodes_[f].pieces == 0)
      throw Error(ExitCode::kFailure,
                  fmt::format("step plan: node {} follows node {} piece by piece, but one of "
                              "them has no pieces or it is not a dependency",
                              node.name, f));
  }
  nodes_.push_back(std::move(node));
  schedule_.clear();
  return index;
}

std::vector<int> StepPlan::predecessors(int i) const {
  std::vector<int> pred = nodes_[i].deps;
  for (int j = i - 1; j >= 0; --j)
    if (nodes_[j].lane == nodes_[i].lane) {
      pred.push_back(j);
      break;
    }
  std::sort(pred.begin(), pred.end());
  pred.erase(std::unique(pred.begin(), pred.end()), pred.end());
  return pred;
}

std::vector<int> StepPlan::critical_path(const std::vector<double>& weight, double* total) const {
  const int n = static_cast<int>(nodes_.size());
  if (static_cast<int>(weight.size()) != n)
    throw Error(ExitCode::kFailure, "step plan: one weight per node needed");
  std::vector<double> finish(n, 0.0);
  std::vector<int> from(n, -1);
  for (int i = 0; i < n; ++i) {  // index order is topological
    double start = 0.0;
    for (int p : predecessors(i))
      if (from[i] < 0 || finish[p] > start) {
        start = finish[p];
        from[i] = p;
      }
    finish[i] = start + weight[i];
  }
  std::vector<int> path;
  if (n == 0) {
    if (total) *total = 0;
    return path;
  }
  int last = static_cast<int>(std::max_element(finish.begin(), finish.end()) - finish.begin());
  if (total) *total = finish[last];
  for (int i = last; i >= 0; i = from[i]) path.push_back(i);
  std::reverse(path.begin(), path.end());
  return path;
}

int StepPlan::critical_path_nodes() const {
  double total = 0;
  critical_path(std::vector<double>(nodes_.size(), 1.0), &total);
  return static_cast<int>(total);
}

bool StepPlan::pairs_with_next(int i) const {
  const PlanNode& a = nodes_[i];
  const PlanNode& b = nodes_[i + 1];
  if (a.kind != NodeKind::kGemm || b.kind != NodeKind::kGemm || a.lane == b.lane) return false;
  return std::find(b.deps.begin(), b.deps.end(), i) == b.deps.end();
}

std::vector<StepPlan::Group> StepPlan::build_side_by_side_schedule() const {
  const int n = static_cast<int>(nodes_.size());
  std::vector<Group> groups;
  std::vector<int> deferred;
  const auto in = [](const std::vector<int>& v, int x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  const auto depends_on_deferred = [&](int j) {
    for (int d : nodes_[j].deps)
      if (in(deferred, d)) return true;
    return false;
  };
  const auto flush = [&] {
    for (int d : deferred) groups.push_back({{d}, {}, {}});
    deferred.clear();
  };
  for (int i = 0; i < n; ++i) {
    const PlanNode& node = nodes_[i];
    const bool pair = i + 1 < n && pairs_with_next(i);
    if (depends_on_deferred(i) || (pair && depends_on_deferred(i + 1))) flush();
    if (pair) {
      groups.push_back({{i}, {i + 1}, {}});
      ++i;
    } else if (node.kind == NodeKind::kKernel && node.bytes >= kDeferBytes) {
      deferred.push_back(i);
    } else if (node.kind == NodeKind::kGemm && node.pieces > 1) {
      Group g{{}, deferred, {i}};
      deferred.clear();
      // Followers join while everything they depend on is done before the
      // group, or is the node they follow piece by piece.
      while (i + 1 < n && nodes_[i + 1].pieces_follow == g.pieces.back()) {
        bool ready = true;
        for (int d : nodes_[i + 1].deps)
          if (d != nodes_[i + 1].pieces_follow && (in(g.pieces, d) || in(g.beside, d)))
            ready = false;
        if (!ready) break;
        g.pieces.push_back(++i);
      }
      groups.push_back(std::move(g));
    } else {
      if (node.kind == NodeKind::kGemm) flush();
      groups.push_back({{i}, {}, {}});
    }
  }
  flush();
  return groups;
}

const std::vector<StepPlan::Group>& StepPlan::side_by_side_schedule() const {
  if (schedule_.empty() && !nodes_.empty()) schedule_ = build_side_by_side_schedule();
  return schedule_;
}

void StepPlan::run_group(Backend& be, const Group& g) const {
  const auto run_in_order = [this](const std::vector<int>& part) {
    return [this, &part] {
      for (int i : part) nodes_[i].run();
    };
  };
  if (!g.pieces.empty()) {
    ScopedRange range(be, nodes_[g.pieces.front()].name.c_str());
    int count = 0;
    for (int i : g.pieces) count = std::max(count, nodes_[i].pieces);
    be.run_beside_pieces(run_in_order(g.beside), count, [&](int piece) {
      for (int i : g.pieces)
        if (piece < nodes_[i].pieces) nodes_[i].run_piece(piece);
    });
    return;
  }
  ScopedRange range(be, nodes_[g.first.front()].name.c_str());
  if (g.beside.empty())
    run_in_order(g.first)();
  else
    be.run_side_by_side(run_in_order(g.first), run_in_order(g.beside));
}

std::string StepPlan::group_name(const Group& g) const {
  const auto names = [this](const std::vector<int>& part) {
    std::string out;
    for (int i : part) out += (out.empty() ? "" : ",") + nodes_[i].name;
    return out;
  };
  if (!g.pieces.empty())
    return (g.beside.empty() ? "" : names(g.beside) + " beside ") + names(g.pieces) + " in pieces";
  return g.beside.empty() ? names(g.first) : names(g.first) + " | " + names(g.beside);
}

void StepPlan::run_side_by_side(Backend& be) const {
  for (const Group& g : side_by_side_schedule()) run_group(be, g);
}

void StepPlan::run(Backend& be) const {
  if (be.prefers_side_by_side())
    run_side_by_side(be);
  else
    run_on_lanes(be);
}

void StepPlan::run_on_lanes(Backend& be) const {
  const int n = static_cast<int>(nodes_.size());
  // Which nodes another lane waits for: only those get an event after them.
  std::vector<char> signals(n, 0);
  for (const PlanNode& node : nodes_)
    for (int d : node.deps)
      if (nodes_[d].lane != node.lane) signals[d] = 1;
  std::vector<uint64_t> done(n, 0);
  // covered[lane]: the highest node of the other lane this lane already waited for.
  int covered[Backend::kLanes] = {-1, -1};
  try {
    be.select_lane(0);
    const uint64_t fork = be.record_lane_event();
    be.select_lane(1);
    be.wait_lane_event(fork);
    for (int i = 0; i < n; ++i) {
      const PlanNode& node = nodes_[i];
      be.select_lane(node.lane);
      for (int d : node.deps)
        if (nodes_[d].lane != node.lane && d > covered[node.lane]) {
          be.wait_lane_event(done[d]);
          covered[node.lane] = d;  // lane order: everything before d on its lane is done too
        }
      {
        ScopedRange range(be, node.name.c_str());
        node.run();
      }
      if (signals[i]) done[i] = be.record_lane_event();
    }
    be.select_lane(1);
    const uint64_t join = be.record_lane_event();
    be.select_lane(0);
    be.wait_lane_event(join);
  } catch (...) {
    be.select_lane(0);
    throw;
  }
}

}  // namespace mlp
