// cpu_peak: the FP32 peak the bench divides by, measured rather than looked up,
// because a VM's CPU model string says little about its FMA units or clock.
// One core runs independent FMA chains (enough to cover latency x ports) in
// many short trials; the best, times the thread count, is the peak. Without
// x86 FMA the peak is reported as unknown (0) and no share of peak is printed.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

#include "mlp/bench.h"
#include "mlp/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLP_X86 1
#endif

namespace mlp {
namespace {

#ifdef MLP_X86
constexpr int kChains = 12;  // >= FMA latency (4-5) x ports (2)

// Both return FLOPs done; `sink` keeps the compiler from dropping the chains.
__attribute__((target("avx512f"))) double fma_avx512(int64_t iters, float* sink) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(static_cast<float>(k));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  __m512 s = acc[0];
  for (int k = 1; k < kChains; ++k) s = _mm512_add_ps(s, acc[k]);
  float lanes[16];  // not _mm512_reduce_add_ps: GCC 12's version warns -Wuninitialized
  _mm512_storeu_ps(lanes, s);
  *sink = lanes[0] + lanes[15];
  return static_cast<double>(iters) * kChains * 16 * 2;
}

__attribute__((target("avx2,fma"))) double fma_avx2(int64_t iters, float* sink) {
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(static_cast<float>(k));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  __m256 s = acc[0];
  for (int k = 1; k < kChains; ++k) s = _mm256_add_ps(s, acc[k]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  *sink = lanes[0] + lanes[7];
  return static_cast<double>(iters) * kChains * 8 * 2;
}
#endif

volatile float g_sink = 0;

double cpuinfo_mhz() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("cpu MHz", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return std::atof(line.c_str() + colon + 1);
    }
  return 0;
}

}  // namespace

PeakInfo cpu_peak(int threads) {
  PeakInfo p;
#ifdef MLP_X86
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx512 && !avx2) {
    p.source = "unknown: this CPU has no AVX2+FMA";
    return p;
  }
  const auto kernel = avx512 ? fma_avx512 : fma_avx2;
  // One core, many short trials, best one: on a shared machine a few ms with a
  // core to ourselves are far likelier than with all of them. Times the thread
  // count: FMA units are per core (turbo may drop a little with all cores busy,
  // which makes the stated peak, and so every share of it, conservative).
  const int64_t iters = 1'000'000;  // 24M FMA instructions: ~3-7 ms on a current core
  double best = 0;
  for (int trial = 0; trial < 20; ++trial) {
    float sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = kernel(iters, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g_sink = g_sink + sink;  // the chains' result is used, so they are not optimized away
    best = std::max(best, flops / s / 1e9);
  }
  best *= threads;
  p.gflops = best;
  const double mhz = cpuinfo_mhz();
  const std::string per_cycle =
      mhz > 0
          ? fmt::format(" (= {:.1f} FLOP/cycle/core at the nominal {:.0f} MHz of /proc/cpuinfo)",
                        best * 1e3 / (mhz * threads), mhz)
          : "";
  p.source = fmt::format("measured: {} FP32 FMA loop on one core, best of 20, x {} thread{}{}",
                         avx512 ? "AVX-512" : "AVX2", threads, threads == 1 ? "" : "s", per_cycle);
#else
  (void)threads;
  p.source = "unknown on this architecture (no FMA probe)";
#endif
  return p;
}

#ifndef MLP_WITH_CUDA
PeakInfo cuda_peak(int) { throw device_error("cuda_peak: this mnist-mlp was built without CUDA"); }
#endif

}  // namespace mlp
