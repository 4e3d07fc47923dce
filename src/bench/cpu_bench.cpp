// cpu_bench: the CPU comparisons of `mnist-mlp bench` (see include/mlp/bench.h):
// which CPU configurations to run (--cpu-gemm all, --thread-sweep), the GEMM
// phases against the measured peak, and the busy-neighbour figure (--neighbour).
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "bench/bench_stats.h"
#include "cpu/cpu_topology.h"
#include "mlp/bench.h"
#include "mlp/error.h"

namespace mlp {
namespace {

// A child process that spins on one core until killed; it dies with us too.
class Spinner {
 public:
  Spinner() {
    pid_ = fork();
    if (pid_ < 0) throw Error(ExitCode::kFailure, "bench --neighbour: fork failed");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (volatile uint64_t i = 0;; i = i + 1) {
      }
    }
  }
  ~Spinner() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  Spinner(const Spinner&) = delete;
  Spinner& operator=(const Spinner&) = delete;

 private:
  pid_t pid_;
};

}  // namespace

std::vector<CpuOptions> cpu_bench_runs(const CpuOptions& base, bool every_gemm, bool thread_sweep) {
  CpuOptions first = base;
  first.threads = resolve_cpu_threads(base.threads);
  first.gemm = resolve_cpu_gemm(base.gemm);
  std::vector<CpuGemm> gemms{first.gemm};
  if (every_gemm)
    for (CpuGemm g : {CpuGemm::kOnednn, CpuGemm::kOpenblas})
      if (g != first.gemm && (g != CpuGemm::kOnednn || onednn_compiled())) gemms.push_back(g);
  std::vector<int> threads{first.threads};
  if (thread_sweep)
    for (int t = 1; t <= cpu::physical_cores(); ++t)
      if (t != first.threads) threads.push_back(t);
  std::vector<CpuOptions> runs;
  for (CpuGemm g : gemms)
    for (int t : threads) {
      CpuOptions run = first;  // the rest (the subnormal mode) as asked
      run.threads = t;
      run.gemm = g;
      runs.push_back(run);
    }
  return runs;
}

PeakInfo scale_cpu_peak(const PeakInfo& p, int measured_threads, int threads) {
  PeakInfo s = p;
  if (measured_threads > 0 && threads != measured_threads) {
    s.gflops = p.gflops * threads / measured_threads;
    s.source =
        fmt::format("{} (restated for {} thread{})", p.source, threads, threads == 1 ? "" : "s");
  }
  return s;
}

PeakInfo higher_cpu_peak(const PeakInfo& before, const PeakInfo& after) {
  PeakInfo p = after.gflops > before.gflops ? after : before;
  if (before.gflops > 0 && after.gflops > 0)
    p.source = fmt::format("{}; the higher of {:.1f} before the runs and {:.1f} after", p.source,
                           before.gflops, after.gflops);
  return p;
}

void restate_cpu_peak(std::vector<BenchResult>& rows, const PeakInfo& peak, int measured_threads) {
  for (BenchResult& r : rows)
    if (r.device == "cpu") r.peak_gflops = scale_cpu_peak(peak, measured_threads, r.threads).gflops;
}

std::string format_cpu_gemm_report(const std::vector<BenchResult>& rows) {
  std::string out;
  for (const BenchResult& r : rows) {
    if (r.device != "cpu" || r.peak_gflops <= 0) continue;
    if (out.empty())
      out = fmt::format(
          "\nCPU GEMM phases against the measured FP32 peak (step: {:.0f} MFLOP at batch {})\n"
          "{:<9} {:>7} {:>5} {:>9} {:>12} {:>12} {:>12} {:>11}\n",
          r.gflop_per_step * 1e3, r.batch, "gemm", "threads", "batch", "peak GF/s", "fwd GF/s",
          "bwd GF/s", "all GEMMs", "end to end");
    const auto cell = [&](double gf) {
      return fmt::format("{:.0f} {:>3.0f}%", gf, 100 * gf / r.peak_gflops);
    };
    out += fmt::format("{:<9} {:>7} {:>5} {:>9.0f} {:>12} {:>12} {:>12} {:>10.1f}%\n", r.cpu_gemm,
                       r.threads, r.batch, r.peak_gflops, cell(r.forward_gemm_gflops),
                       cell(r.backward_gemm_gflops), cell(r.gemm_gflops),
                       100 * r.gflops / r.peak_gflops);
  }
  return out;
}

NeighbourResult run_neighbour_bench(const Dataset& data, const BenchConfig& cfg,
                                    const CpuOptions& base) {
  CpuOptions many = base, one = base;
  many.threads = resolve_cpu_threads(base.threads);
  one.threads = 1;
  const auto be_many = make_cpu_backend(many);
  const auto be_one = make_cpu_backend(one);
  BenchConfig c = cfg;
  c.repeats = 1;
  const PeakInfo no_peak;
  std::vector<double> sps_many, sps_one;
  Spinner spinner;  // from here to the end of the function
  for (int rep = 0; rep < std::max(1, cfg.repeats); ++rep) {
    // Alternate which goes first, so drift hits both.
    for (int side = 0; side < 2; ++side) {
      const bool many_now = (side == 0) == (rep % 2 == 0);
      const BenchResult r = run_bench(many_now ? *be_many : *be_one, data, c, no_peak);
      (many_now ? sps_many : sps_one).push_back(r.samples_per_sec);
    }
  }
  NeighbourResult n;
  n.threads = many.threads;
  n.samples_per_sec = median(sps_many);
  n.samples_per_sec_one_thread = median(sps_one);
  n.ratio = n.samples_per_sec_one_thread > 0 ? n.samples_per_sec / n.samples_per_sec_one_thread : 0;
  return n;
}

}  // namespace mlp
