// Per-kernel timing of one training step (`mnist-mlp bench --kernels`): every
// node of the step plan (mlp/step_plan.h) timed on its own, with a timestamp
// before and after it, issued eagerly on lane 0 so nothing overlaps; the
// plan's critical path weighted by those times; and the whole step as the
// trainer runs it (the captured graph, forked lanes overlapping) for contrast;
// on the CPU also each group of its side-by-side schedule, timed as it runs
// inside the step, both cores at work.
// Event timestamps include a launch's gap, so small kernels read a little
// high; `ncu` gives exact per-kernel durations (README: Profiling the GPU path).
#pragma once

#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/bench.h"
#include "mlp/dataset.h"
#include "mlp/step_plan.h"

namespace mlp {

struct KernelTiming {
  std::string name;  // the plan node's name (also its NVTX range)
  int lane = 0;
  NodeKind kind = NodeKind::kKernel;
  double us = 0;        // median over repeats of the mean per step
  double achieved = 0;  // GFLOP/s (GEMMs) or GB/s (kernels)
  double of_peak = 0;   // achieved / the device's peak; 0 when the peak is unknown
  bool critical = false;
};

// One group of the CPU's side-by-side schedule (StepPlan::Group), timed as the
// step runs it: its GEMMs' FLOP over its whole time, whatever else it holds.
struct GroupTiming {
  std::string name;        // StepPlan::group_name
  double us = 0;           // median over repeats of the mean per step
  double gemm_flops = 0;   // of the GEMM nodes in it, per step
  double gemm_gflops = 0;  // gemm_flops / us; 0 without GEMMs
  double of_peak = 0;      // gemm_gflops / the device's peak
};

struct KernelReport {
  std::string device;  // "cpu" | "cuda"
  int64_t batch = 0;
  std::vector<KernelTiming> nodes;  // in plan order
  double sum_us = 0;                // every node one after another
  double critical_path_us = 0;      // the longest dependent chain, by the times above
  int critical_path_nodes = 0;
  double step_us = 0;  // one replayed step (graph on CUDA), median over repeats
  // Backends that run side_by_side_schedule() (the CPU): every group, in order.
  std::vector<GroupTiming> groups;
  double groups_us = 0;
};

// cfg.batch, cfg.steps (per repeat), cfg.warmup, cfg.repeats and cfg.sizes are used.
KernelReport time_kernels(Backend& backend, const Dataset& data, const BenchConfig& cfg,
                          const PeakInfo& peak);
// Restates every GEMM share of `r` (nodes and groups) against a peak of
// `gflops` (bench: the CPU peak measured again after the timing, when higher).
void restate_gemm_peak(KernelReport& r, double gflops);
// The table `bench --kernels` prints.
std::string format_kernel_report(const KernelReport& r);

}  // namespace mlp
