// Bench: measures one backend training the MLP, the way `mnist-mlp bench`
// reports it. Throughput comes from the real training loop (Trainer: loader
// thread, async upload, graph replay); the phase breakdown from a second,
// eager run with a timestamp around every phase and every GEMM. Every figure
// is a median over repeats, because the machines it runs on are shared.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/dataset.h"

namespace mlp {

// Exact GEMM FLOPs of one training step (2 per multiply-add):
//   forward  2*B*in*out per layer
//   backward dW: 2*B*in*out per layer; dX: 2*B*in*out per layer except the first
struct StepFlops {
  double forward = 0;
  double backward = 0;
  double total() const { return forward + backward; }
};
StepFlops gemm_flops_per_step(const std::vector<int64_t>& sizes, int64_t batch);

// A machine's peak, and how it was obtained (printed next to the share of it).
struct PeakInfo {
  double gflops = 0;  // FP32; 0 when unknown
  double gbps = 0;    // memory bandwidth; 0 when unknown
  std::string source;
};
// Measured: an FP32 FMA loop (AVX-512, else AVX2+FMA) on one core, best of 20
// short trials, times `threads`; `source` also gives FLOP/cycle/core at the
// nominal clock /proc/cpuinfo states. Bandwidth is not measured here (0).
PeakInfo cpu_peak(int threads);
// From the device's attributes: SMs x FP32 lanes per SM x 2 x boost clock, and
// 2 x memory clock x bus width. Throws Error(kDevice) when built without CUDA.
PeakInfo cuda_peak(int device);

// The phases of one step, in the order they run.
enum BenchPhase {
  kPhaseCopy,           // batch upload host -> backend memory
  kPhaseForwardGemm,    // the layer GEMMs of Model::forward
  kPhaseForwardOther,   // u8->float, bias, ReLU
  kPhaseBackwardGemm,   // dW and dX GEMMs
  kPhaseBackwardOther,  // softmax + cross-entropy, bias grads, ReLU backward
  kPhaseUpdate,         // the Adam step
  kPhaseCount
};
const char* phase_name(int phase);  // "copy", "forward_gemm", ...

struct BenchConfig {
  std::vector<int64_t> sizes{784, 500, 500, 500, 10};
  int64_t batch = 100;
  int64_t steps = 100;  // measured steps per repeat
  int64_t warmup = 20;  // steps run and discarded first
  int repeats = 5;      // medians are over these
  bool use_graph = true;
  AdamHyper adam;
  uint64_t seed = 1;
};

struct BenchResult {
  std::string device;   // "cpu" | "cuda"
  std::string backend;  // Backend::describe()
  int64_t batch = 0;
  int64_t steps = 0;  // per repeat, after clamping to one epoch
  int repeats = 0;
  double samples_per_sec = 0;  // median over repeats of the training loop
  double samples_per_sec_min = 0, samples_per_sec_max = 0;
  double step_ms = 0;                 // 1000 * batch / samples_per_sec
  double epoch_seconds = 0;           // projected for 60000 samples
  double phase_ms[kPhaseCount] = {};  // median over repeats of the mean per step
  double phase_total_ms = 0;          // sum of phase_ms (eager, timed step)
  double gemm_ms = 0;                 // forward_gemm + backward_gemm
  double gemm_share = 0;              // gemm_ms / phase_total_ms
  double gflop_per_step = 0;
  double gflops = 0;       // achieved over the whole training loop
  double gemm_gflops = 0;  // inside the GEMMs alone
  double forward_gemm_gflops = 0, backward_gemm_gflops = 0;  // each GEMM phase alone
  double peak_gflops = 0;                                    // 0: unknown
  // CPU rows: the pool's threads and the GEMM library ("onednn" | "openblas");
  // 0 and "" elsewhere. Set by whoever made the backend (see cpu_bench_runs).
  int threads = 0;
  std::string cpu_gemm;
  double loss = 0;  // mean training loss of the last repeat (sanity)
};

// Trains a fresh model (He init from cfg.seed) on `data` with `backend`:
// cfg.warmup steps, then cfg.repeats x (cfg.steps timed training-loop steps,
// cfg.steps eagerly timed phase steps), interleaved so noise hits both.
BenchResult run_bench(Backend& backend, const Dataset& data, const BenchConfig& cfg,
                      const PeakInfo& peak);

// ---- CPU comparisons (src/bench/cpu_bench.cpp) ----------------------------------------

// The CPU configurations one bench runs, resolved (threads > 0, gemm not
// kDefault), `base` first: with every_gemm also base's threads on the other
// GEMM library; with thread_sweep also 1..physical cores threads on each.
std::vector<CpuOptions> cpu_bench_runs(const CpuOptions& base, bool every_gemm, bool thread_sweep);
// A peak measured for `measured_threads`, restated for `threads` (FMA units are per core).
PeakInfo scale_cpu_peak(const PeakInfo& p, int measured_threads, int threads);
// The CPU peak measured before and after a bench's runs: the higher of the two
// (a trial window shared with another process reads low, never high, so the
// lower one would inflate every share of it), its source saying both.
PeakInfo higher_cpu_peak(const PeakInfo& before, const PeakInfo& after);
// Gives every CPU row of `rows` `peak` (measured for `measured_threads`),
// restated for the row's own thread count; other rows are left as they are.
void restate_cpu_peak(std::vector<BenchResult>& rows, const PeakInfo& peak, int measured_threads);
// Text for the tables: per CPU row the GEMM phases' GFLOP/s and share of the
// peak, and the end-to-end share; "" when no row has a peak.
std::string format_cpu_gemm_report(const std::vector<BenchResult>& rows);

// The busy-neighbour figure: the same training loop at `base` threads and at
// 1 thread, alternated cfg.repeats times, while a child process spins on one
// core; ratio = median samples/s at base threads / at 1 thread (>= 0.9 wanted).
struct NeighbourResult {
  int threads = 0;  // base's
  double samples_per_sec = 0, samples_per_sec_one_thread = 0;
  double ratio = 0;
};
NeighbourResult run_neighbour_bench(const Dataset& data, const BenchConfig& cfg,
                                    const CpuOptions& base);

// 60000 random images (bytes 0..255) and labels 0..9 from `seed`: same shapes
// as MNIST's training set, for machines without the data.
Dataset synthetic_dataset(uint64_t seed, int64_t count = 60000, int64_t rows = 28,
                          int64_t cols = 28);

}  // namespace mlp
