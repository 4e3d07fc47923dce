// cpu_ops_bench: Google Benchmark for every CPU op (the free functions of
// src/cpu/cpu_ops.h), on the network's own shapes at batch 100 and 1024.
// GEMMs (each on oneDNN, where built, and on OpenBLAS: gemm_fwd/onednn/...)
// report FLOP/s and % of the measured FP32 peak (cpu_peak); the
// memory-bound ops report bytes/s (bytes each call must read and write), next
// to a memcpy of the same size as the in-cache reference, each at every vector
// width the CPU runs (op/avx512/..., op/avx2/..., op/baseline/...: the same
// bits at each, src/cpu/vector_width.h). Wall-clock time is
// used throughout (UseRealTime) because the ops run on a thread pool.
//   cpu_ops_bench [--threads=N] [--benchmark_filter=REGEX] [other benchmark flags]
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/vector_width.h"
#include "mlp/bench.h"
#include "mlp/rng.h"

namespace {

using mlp::CMat;
using mlp::Mat;
using mlp::Trans;
using mlp::cpu::VectorWidth;

int g_threads = 1;
double g_peak_gflops = 0;
std::unique_ptr<mlp::cpu::ThreadPool> g_pool;

const std::vector<int64_t> kSizes{784, 500, 500, 500, 10};
const std::vector<int64_t> kBatches{100, 1024};

std::vector<float> random_floats(std::size_t n, uint64_t seed) {
  std::vector<float> v(n);
  mlp::Pcg32 rng(seed, 7);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// Times the benchmark loop on the wall clock, for counters derived from it.
template <class F>
double timed_loop(benchmark::State& state, const F& body) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void bm_gemm(benchmark::State& state, mlp::CpuGemm lib, Trans ta, Trans tb, int64_t m, int64_t n,
             int64_t k) {
  // c: (m, n) = op(a): (m, k) * op(b): (k, n)
  const int64_t ar = ta == Trans::kNo ? m : k, ac = ta == Trans::kNo ? k : m;
  const int64_t br = tb == Trans::kNo ? k : n, bc = tb == Trans::kNo ? n : k;
  auto a = random_floats(static_cast<std::size_t>(ar * ac), 1);
  auto b = random_floats(static_cast<std::size_t>(br * bc), 2);
  std::vector<float> c(static_cast<std::size_t>(m * n));
  const double flops = 2.0 * static_cast<double>(m * n * k);
  const double secs = timed_loop(state, [&] {
    mlp::cpu::gemm(*g_pool, lib, ta, tb, 1.0f, CMat{a.data(), ar, ac}, CMat{b.data(), br, bc}, 0.0f,
                   Mat{c.data(), m, n});
    benchmark::ClobberMemory();
  });
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  if (g_peak_gflops > 0 && secs > 0)
    state.counters["%peak"] =
        100.0 * flops * static_cast<double>(state.iterations()) / secs / (g_peak_gflops * 1e9);
}

void set_bytes(benchmark::State& state, double bytes_per_call) {
  state.SetBytesProcessed(
      static_cast<int64_t>(bytes_per_call * static_cast<double>(state.iterations())));
}

void bm_memcpy(benchmark::State& state, std::size_t bytes) {
  std::vector<char> src(bytes, 1), dst(bytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * static_cast<double>(bytes));  // read + write, like the ops
}

void bm_u8_to_float(benchmark::State& state, VectorWidth width, int64_t rows, int64_t cols) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  std::vector<uint8_t> in(static_cast<std::size_t>(rows * cols), 200);
  std::vector<float> out(in.size());
  for (auto _ : state) {
    mlp::cpu::u8_to_float(*g_pool, in.data(), Mat{out.data(), rows, cols}, false);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 5.0 * static_cast<double>(in.size()));
}

void bm_bias_relu_forward(benchmark::State& state, VectorWidth width, int64_t rows, int64_t cols) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  auto z = random_floats(static_cast<std::size_t>(rows * cols), 3);
  auto bias = random_floats(static_cast<std::size_t>(cols), 4);
  for (auto _ : state) {
    mlp::cpu::bias_relu_forward(*g_pool, Mat{z.data(), rows, cols}, bias.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 8.0 * static_cast<double>(rows * cols));
}

void bm_bias_forward(benchmark::State& state, VectorWidth width, int64_t rows, int64_t cols) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  std::vector<float> z(static_cast<std::size_t>(rows * cols), 0.0f);
  auto bias = random_floats(static_cast<std::size_t>(cols), 5);
  for (auto _ : state) {
    mlp::cpu::bias_forward(Mat{z.data(), rows, cols}, bias.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 8.0 * static_cast<double>(rows * cols));
}

void bm_relu_backward(benchmark::State& state, VectorWidth width, int64_t rows, int64_t cols) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  auto g = random_floats(static_cast<std::size_t>(rows * cols), 6);
  auto act = random_floats(g.size(), 7);
  for (auto _ : state) {
    mlp::cpu::relu_backward(*g_pool, Mat{g.data(), rows, cols}, CMat{act.data(), rows, cols});
    benchmark::ClobberMemory();
  }
  set_bytes(state, 12.0 * static_cast<double>(rows * cols));
}

void bm_bias_grad(benchmark::State& state, VectorWidth width, int64_t rows, int64_t cols) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  auto g = random_floats(static_cast<std::size_t>(rows * cols), 8);
  std::vector<float> db(static_cast<std::size_t>(cols));
  for (auto _ : state) {
    mlp::cpu::bias_grad(CMat{g.data(), rows, cols}, db.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 4.0 * static_cast<double>(rows * cols));
}

void bm_softmax_xent(benchmark::State& state, int64_t rows, int64_t classes) {
  auto logits = random_floats(static_cast<std::size_t>(rows * classes), 9);
  std::vector<float> d(logits.size());
  std::vector<uint8_t> labels(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 10);
  double metrics[mlp::kMetricCount] = {};
  for (auto _ : state) {
    mlp::cpu::softmax_xent(CMat{logits.data(), rows, classes}, labels.data(), d.data(), metrics);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 8.0 * static_cast<double>(rows * classes) + static_cast<double>(rows));
}

void bm_adam_step(benchmark::State& state, VectorWidth width, int64_t n) {
  const mlp::cpu::ScopedVectorWidth scoped(width);
  auto p = random_floats(static_cast<std::size_t>(n), 10);
  auto g = random_floats(p.size(), 11);
  std::vector<float> m(p.size()), v(p.size());
  mlp::OptimizerState opt;  // default Adam
  for (auto _ : state) {
    mlp::cpu::adam_step(*g_pool, p.data(), g.data(), m.data(), v.data(), n, &opt);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 28.0 * static_cast<double>(n));  // read p, g, m, v; write p, m, v
}

void register_all() {
  static std::set<std::string> names;  // layers of the same shape are benchmarked once
  const auto reg = [](const std::string& name, auto fn) {
    if (!names.insert(name).second) return;
    benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->Unit(benchmark::kMicrosecond);
  };
  for (int64_t b : kBatches) {
    std::vector<mlp::CpuGemm> libs{mlp::CpuGemm::kOpenblas};
    if (mlp::onednn_compiled()) libs.insert(libs.begin(), mlp::CpuGemm::kOnednn);
    for (const mlp::CpuGemm lib : libs)
      for (std::size_t l = 0; l + 1 < kSizes.size(); ++l) {
        const int64_t in = kSizes[l], out = kSizes[l + 1];
        const char* name = mlp::cpu_gemm_name(lib);
        reg(fmt::format("gemm_fwd/{}/B{}/{}x{}", name, b, in, out),
            [=](benchmark::State& s) { bm_gemm(s, lib, Trans::kNo, Trans::kNo, b, out, in); });
        reg(fmt::format("gemm_dW/{}/B{}/{}x{}", name, b, in, out),
            [=](benchmark::State& s) { bm_gemm(s, lib, Trans::kYes, Trans::kNo, in, out, b); });
        if (l > 0)
          reg(fmt::format("gemm_dX/{}/B{}/{}x{}", name, b, in, out),
              [=](benchmark::State& s) { bm_gemm(s, lib, Trans::kNo, Trans::kYes, b, in, out); });
      }
    // The vectorized loops, at every vector width this CPU runs (widest last).
    for (const VectorWidth w : mlp::cpu::supported_vector_widths()) {
      const char* wn = mlp::cpu::vector_width_name(w);
      reg(fmt::format("u8_to_float/{}/B{}/{}", wn, b, kSizes[0]),
          [=](benchmark::State& s) { bm_u8_to_float(s, w, b, kSizes[0]); });
      reg(fmt::format("bias_relu_forward/{}/B{}/{}", wn, b, kSizes[1]),
          [=](benchmark::State& s) { bm_bias_relu_forward(s, w, b, kSizes[1]); });
      reg(fmt::format("bias_forward/{}/B{}/{}", wn, b, kSizes.back()),
          [=](benchmark::State& s) { bm_bias_forward(s, w, b, kSizes.back()); });
      reg(fmt::format("relu_backward/{}/B{}/{}", wn, b, kSizes[1]),
          [=](benchmark::State& s) { bm_relu_backward(s, w, b, kSizes[1]); });
      reg(fmt::format("bias_grad/{}/B{}/{}", wn, b, kSizes[1]),
          [=](benchmark::State& s) { bm_bias_grad(s, w, b, kSizes[1]); });
    }
    reg(fmt::format("softmax_xent/B{}/{}", b, kSizes.back()),
        [=](benchmark::State& s) { bm_softmax_xent(s, b, kSizes.back()); });
    const auto act_bytes = static_cast<std::size_t>(b * kSizes[1] * 4);
    reg(fmt::format("memcpy_reference/B{}/{}x{}_floats", b, b, kSizes[1]),
        [=](benchmark::State& s) { bm_memcpy(s, act_bytes); });
  }
  // The whole flat parameter buffer of 784-500-500-500-10: one Adam call per step.
  int64_t params = 0;
  for (std::size_t l = 0; l + 1 < kSizes.size(); ++l) params += (kSizes[l] + 1) * kSizes[l + 1];
  for (const VectorWidth w : mlp::cpu::supported_vector_widths())
    reg(fmt::format("adam_step/{}/{}", mlp::cpu::vector_width_name(w), params),
        [=](benchmark::State& s) { bm_adam_step(s, w, params); });
  reg(fmt::format("memcpy_reference/{}_floats", params),
      [=](benchmark::State& s) { bm_memcpy(s, static_cast<std::size_t>(params) * 4); });
  reg("memcpy_reference/64MiB_dram", [](benchmark::State& s) { bm_memcpy(s, 64u << 20); });
}

}  // namespace

int main(int argc, char** argv) {
  // Our one flag, removed before Google Benchmark sees the rest.
  g_threads = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      g_threads = std::atoi(argv[i] + 10);
    else
      args.push_back(argv[i]);
  }
  if (g_threads < 1) g_threads = 1;
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;

  openblas_set_num_threads(1);  // as the CPU backend: the pool splits the GEMMs
  g_pool = std::make_unique<mlp::cpu::ThreadPool>(g_threads);
  const mlp::PeakInfo peak = mlp::cpu_peak(g_threads);
  g_peak_gflops = peak.gflops;
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("cpu_peak",
                              fmt::format("{:.1f} GFLOP/s ({})", peak.gflops, peak.source));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
