// time_kernels (see mlp/kernel_timing.h).
#include "mlp/kernel_timing.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "bench/bench_stats.h"
#include "mlp/model.h"

namespace mlp {

KernelReport time_kernels(Backend& be, const Dataset& data, const BenchConfig& cfg,
                          const PeakInfo& peak) {
  const int64_t batch = cfg.batch, pixels = data.pixels();
  Model model(be, cfg.sizes, batch, cfg.adam, false);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, cfg.seed));
  // One batch, uploaded once: the timing is about the kernels, not the copy.
  std::vector<uint8_t> host(static_cast<std::size_t>(batch * (pixels + 1)));
  for (int64_t s = 0; s < batch; ++s) {
    const int64_t i = s % data.count;
    std::memcpy(host.data() + s * pixels, data.images.data() + i * pixels,
                static_cast<std::size_t>(pixels));
    host[static_cast<std::size_t>(batch * pixels + s)] = data.labels[static_cast<std::size_t>(i)];
  }
  Buffer input = be.alloc(host.size());
  be.upload(input.data(), host.data(), host.size());
  Buffer metrics = be.alloc(kMetricCount * sizeof(double));
  const uint8_t* images = input.as<uint8_t>();
  const uint8_t* labels = images + batch * pixels;
  double* m = metrics.as<double>();

  for (int64_t s = 0; s < std::max<int64_t>(cfg.warmup, 1); ++s)
    model.train_step(images, labels, batch, m);
  be.synchronize();
  const StepPlan plan = model.train_plan(images, labels, batch, m);
  const std::size_t n = plan.nodes().size();
  const auto graph = be.capture([&] { model.train_step(images, labels, batch, m); });

  std::vector<std::vector<double>> per_node(n);  // per repeat, mean ms per step
  std::vector<double> step_ms;
  // The CPU's schedule, group by group as the step runs it (cores overlapping
  // inside a group): where the trained step's time goes.
  const bool by_groups = be.prefers_side_by_side();
  const std::vector<StepPlan::Group> groups =
      by_groups ? plan.side_by_side_schedule() : std::vector<StepPlan::Group>{};
  std::vector<std::vector<double>> per_group(groups.size());
  const int64_t steps = std::max<int64_t>(cfg.steps, 1);
  for (int rep = 0; rep < std::max(cfg.repeats, 1); ++rep) {
    std::vector<double> sum(n, 0.0);
    for (int64_t s = 0; s < steps; ++s) {
      // Eager, on lane 0, one node at a time: 2n timestamps per step stay well
      // inside the timestamp ring (Backend::kTimestampRing).
      std::vector<std::pair<uint64_t, uint64_t>> stamps(n);
      for (std::size_t i = 0; i < n; ++i) {
        const uint64_t from = be.record_timestamp();
        plan.nodes()[i].run();
        stamps[i] = {from, be.record_timestamp()};
      }
      for (std::size_t i = 0; i < n; ++i)
        sum[i] += be.elapsed_ms(stamps[i].first, stamps[i].second);
    }
    for (std::size_t i = 0; i < n; ++i) per_node[i].push_back(sum[i] / static_cast<double>(steps));
    be.synchronize();
    const uint64_t t0 = be.record_timestamp();
    for (int64_t s = 0; s < steps; ++s) be.replay(*graph);
    const uint64_t t1 = be.record_timestamp();
    step_ms.push_back(be.elapsed_ms(t0, t1) / static_cast<double>(steps));
    if (!by_groups) continue;
    std::vector<double> group_sum(groups.size(), 0.0);
    for (int64_t s = 0; s < steps; ++s)
      for (std::size_t g = 0; g < groups.size(); ++g) {
        const uint64_t from = be.record_timestamp();
        plan.run_group(be, groups[g]);
        group_sum[g] += be.elapsed_ms(from, be.record_timestamp());
      }
    for (std::size_t g = 0; g < groups.size(); ++g)
      per_group[g].push_back(group_sum[g] / static_cast<double>(steps));
  }

  KernelReport r;
  r.device = backend_kind_name(be.kind());
  r.batch = batch;
  std::vector<double> weight(n);
  for (std::size_t i = 0; i < n; ++i) {
    const PlanNode& node = plan.nodes()[i];
    KernelTiming k;
    k.name = node.name;
    k.lane = node.lane;
    k.kind = node.kind;
    k.us = 1000.0 * median(per_node[i]);
    const double seconds = k.us * 1e-6;
    if (seconds > 0)
      k.achieved = (node.kind == NodeKind::kGemm ? node.flops : node.bytes) / seconds / 1e9;
    const double p = node.kind == NodeKind::kGemm ? peak.gflops : peak.gbps;
    k.of_peak = p > 0 ? k.achieved / p : 0.0;
    weight[i] = k.us;
    r.sum_us += k.us;
    r.nodes.push_back(k);
  }
  for (int i : plan.critical_path(weight, &r.critical_path_us)) r.nodes[i].critical = true;
  r.critical_path_nodes = plan.critical_path_nodes();
  r.step_us = 1000.0 * median(step_ms);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    GroupTiming t;
    t.name = plan.group_name(groups[g]);
    t.us = 1000.0 * median(per_group[g]);
    for (const auto* part : {&groups[g].first, &groups[g].beside, &groups[g].pieces})
      for (int i : *part)
        if (plan.nodes()[i].kind == NodeKind::kGemm) t.gemm_flops += plan.nodes()[i].flops;
    if (t.us > 0 && t.gemm_flops > 0) t.gemm_gflops = t.gemm_flops / (t.us * 1e-6) / 1e9;
    t.of_peak = peak.gflops > 0 ? t.gemm_gflops / peak.gflops : 0.0;
    r.groups_us += t.us;
    r.groups.push_back(t);
  }
  return r;
}

void restate_gemm_peak(KernelReport& r, double gflops) {
  if (gflops <= 0) return;
  for (KernelTiming& k : r.nodes)
    if (k.kind == NodeKind::kGemm) k.of_peak = k.achieved / gflops;
  for (GroupTiming& g : r.groups) g.of_peak = g.gemm_gflops / gflops;
}

std::string format_kernel_report(const KernelReport& r) {
  std::string s = fmt::format(
      "kernels {} batch {} (each node timed alone; * = on the critical path)\n", r.device, r.batch);
  s += fmt::format("  {:<26} {:>4} {:>10} {:>12} {:>8}\n", "node", "lane", "us/step", "achieved",
                   "of peak");
  for (const KernelTiming& k : r.nodes)
    s += fmt::format("{} {:<26} {:>4} {:>10.2f} {:>8.1f} {:<3} {:>7}\n", k.critical ? "*" : " ",
                     k.name, k.lane, k.us, k.achieved, k.kind == NodeKind::kGemm ? "GF/s" : "GB/s",
                     k.of_peak > 0 ? fmt::format("{:.1f}%", 100.0 * k.of_peak) : "-");
  s += fmt::format(
      "  sum of nodes {:.1f} us | critical path {:.1f} us over {} of {} nodes "
      "(plan: {} dependent nodes) | step as trained (graph, lanes overlapping) {:.1f} us\n",
      r.sum_us, r.critical_path_us,
      std::count_if(r.nodes.begin(), r.nodes.end(),
                    [](const KernelTiming& k) { return k.critical; }),
      r.nodes.size(), r.critical_path_nodes, r.step_us);
  if (r.groups.empty()) return s;
  s += fmt::format(
      "\n{} schedule batch {} (each group timed inside the step as it trains: the cores "
      "overlapping within a group)\n",
      r.device, r.batch);
  s += fmt::format("  {:<56} {:>10} {:>7} {:>10} {:>8}\n", "group", "us/step", "share", "GEMM GF/s",
                   "of peak");
  for (const GroupTiming& g : r.groups)
    s += fmt::format("  {:<56} {:>10.2f} {:>6.1f}% {:>10} {:>8}\n", g.name, g.us,
                     r.groups_us > 0 ? 100.0 * g.us / r.groups_us : 0.0,
                     g.gemm_gflops > 0 ? fmt::format("{:.1f}", g.gemm_gflops) : "-",
                     g.of_peak > 0 ? fmt::format("{:.1f}%", 100.0 * g.of_peak) : "-");
  s += fmt::format("  sum of groups {:.1f} us\n", r.groups_us);
  return s;
}

}  // namespace mlp
