// cuda_kernels_bench: our CUDA kernels (kernels/<op>.cuh launchers) against
// their cuDNN equivalents, at the network's shapes (batch 100, 1024) and one
// large batch where bandwidth, not launch latency, decides. Reports bytes/s
// (what each call must read and write) and "%peak_bw" against the device's
// nominal bandwidth (cuda_peak). Timed with CUDA events around kLaunches
// back-to-back launches per iteration (manual time), so event overhead is
// amortised and the figure is device time, not host time.
//   ours                     cuDNN
//   softmax_xent (fused)     cudnnSoftmaxForward (probabilities only)
//   bias_relu_forward        cudnnAddTensor + cudnnActivationForward(RELU)
//   bias_forward             cudnnAddTensor
//   relu_backward            cudnnActivationBackward(RELU)
//   bias_grad                cudnnConvolutionBackwardBias
//   u8_to_float, adam_step   (no cuDNN equivalent: vs peak only)
//   the step plan's fused kernels (vs the unfused ones above and the peak):
//   relu_backward_bias_grad, softmax_xent_grid (+ bias gradient), adam_update (float4)
// Without a usable device it prints why and exits 0. cuDNN is loaded at run
// time (cudnn_loader.h): where it is missing, the cuDNN rows are left out with
// the reason and ours still run.
#include <benchmark/benchmark.h>
#include <cudnn.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/micro/cudnn_loader.h"  // defines: cudnn_loader::cudnn, the dlopen'd cuDNN
#include "kernels/adam.cuh"
#include "kernels/bias_grad.cuh"
#include "kernels/cuda_check.cuh"   // defines: MLP_CUDA_CHECK
#include "kernels/elementwise.cuh"  // defines: u8_to_float, bias_relu_forward, ...
#include "kernels/relu_bias_grad.cuh"
#include "kernels/softmax_xent.cuh"
#include "mlp/backend.h"
#include "mlp/bench.h"

#define CUDNN_CHECK(stmt)                                                                         \
  do {                                                                                            \
    const cudnnStatus_t s_ = (stmt);                                                              \
    if (s_ != CUDNN_STATUS_SUCCESS)                                                               \
      throw mlp::Error(mlp::ExitCode::kDevice,                                                    \
                       std::string("cuDNN: " #stmt " failed: ") + dnn().cudnnGetErrorString(s_)); \
  } while (0)

namespace {

const mlp::cudnn_loader::CudnnApi& dnn() { return mlp::cudnn_loader::cudnn(); }

constexpr int kLaunches = 50;
double g_peak_gbps = 0;
cudaStream_t g_stream = nullptr;
cudnnHandle_t g_cudnn = nullptr;

// Device buffer of n floats (or bytes), filled with a small repeating pattern.
struct Dev {
  void* p = nullptr;
  explicit Dev(std::size_t bytes) {
    MLP_CUDA_CHECK(cudaMalloc(&p, bytes));
    MLP_CUDA_CHECK(cudaMemset(p, 0, bytes));
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  float* f() const { return static_cast<float*>(p); }
  uint8_t* u8() const { return static_cast<uint8_t*>(p); }
};

void fill(const Dev& d, std::size_t floats, float scale) {
  std::vector<float> h(floats);
  for (std::size_t i = 0; i < floats; ++i) h[i] = scale * static_cast<float>(int(i % 17) - 8);
  MLP_CUDA_CHECK(cudaMemcpy(d.p, h.data(), floats * sizeof(float), cudaMemcpyHostToDevice));
}

// A (rows, cols) float matrix as an NCHW tensor: N = rows, C = cols, H = W = 1.
struct Tensor {
  cudnnTensorDescriptor_t d = nullptr;
  Tensor(int64_t rows, int64_t cols) {
    CUDNN_CHECK(dnn().cudnnCreateTensorDescriptor(&d));
    CUDNN_CHECK(dnn().cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                 static_cast<int>(rows), static_cast<int>(cols), 1,
                                                 1));
  }
  ~Tensor() { dnn().cudnnDestroyTensorDescriptor(d); }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
};

struct Relu {
  cudnnActivationDescriptor_t d = nullptr;
  Relu() {
    CUDNN_CHECK(dnn().cudnnCreateActivationDescriptor(&d));
    CUDNN_CHECK(
        dnn().cudnnSetActivationDescriptor(d, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  }
  ~Relu() { dnn().cudnnDestroyActivationDescriptor(d); }
};

// Times kLaunches calls of `op` per iteration with CUDA events.
void run(benchmark::State& state, double bytes_per_call, const std::function<void()>& op) {
  cudaEvent_t start, stop;
  MLP_CUDA_CHECK(cudaEventCreate(&start));
  MLP_CUDA_CHECK(cudaEventCreate(&stop));
  op();  // first launch: module loading, cuDNN heuristics
  MLP_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  double total_s = 0;
  for (auto _ : state) {
    MLP_CUDA_CHECK(cudaEventRecord(start, g_stream));
    for (int i = 0; i < kLaunches; ++i) op();
    MLP_CUDA_CHECK(cudaEventRecord(stop, g_stream));
    MLP_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MLP_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1e3 / kLaunches);  // per call
    total_s += ms / 1e3;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  state.SetBytesProcessed(
      static_cast<int64_t>(bytes_per_call * static_cast<double>(state.iterations())));
  const double calls = static_cast<double>(state.iterations()) * kLaunches;
  if (g_peak_gbps > 0 && total_s > 0)
    state.counters["%peak_bw"] = 100.0 * bytes_per_call * calls / total_s / (g_peak_gbps * 1e9);
}

void register_all() {
  const auto reg = [](const std::string& name, std::function<void(benchmark::State&)> fn) {
    // The cuDNN rows need the library; without it only ours run (main says why).
    if (name.find("/cudnn") != std::string::npos && !g_cudnn) return;
    benchmark::RegisterBenchmark(name.c_str(),
                                 [fn](benchmark::State& s) {
                                   try {
                                     fn(s);
                                   } catch (const std::exception& e) {
                                     s.SkipWithError(e.what());  // e.g. out of memory at B65536
                                   }
                                 })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  const float one = 1.0f, zero = 0.0f;
  for (int64_t b : {int64_t{100}, int64_t{1024}, int64_t{65536}}) {
    const int64_t hid = 500, classes = 10, in = 784;
    const double n = static_cast<double>(b * hid);

    reg(fmt::format("u8_to_float/ours/B{}x{}", b, in), [=](benchmark::State& s) {
      Dev x(static_cast<std::size_t>(b * in)), y(static_cast<std::size_t>(b * in) * 4);
      run(s, 5.0 * static_cast<double>(b * in),
          [&] { mlp::kernels::u8_to_float(x.u8(), y.f(), b * in, false, g_stream); });
    });

    reg(fmt::format("bias_relu_forward/ours/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev z(static_cast<std::size_t>(n) * 4), bias(hid * 4);
      fill(z, static_cast<std::size_t>(n), 0.1f);
      run(s, 8.0 * n, [&] { mlp::kernels::bias_relu_forward(z.f(), bias.f(), b, hid, g_stream); });
    });
    reg(fmt::format("bias_relu_forward/cudnn_add+relu/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev z(static_cast<std::size_t>(n) * 4), bias(hid * 4);
      fill(z, static_cast<std::size_t>(n), 0.1f);
      Tensor tz(b, hid), tb(1, hid);
      Relu relu;
      run(s, 8.0 * n, [&] {  // two passes over z: the unfused equivalent
        CUDNN_CHECK(dnn().cudnnAddTensor(g_cudnn, &one, tb.d, bias.p, &one, tz.d, z.p));
        CUDNN_CHECK(
            dnn().cudnnActivationForward(g_cudnn, relu.d, &one, tz.d, z.p, &zero, tz.d, z.p));
      });
    });

    reg(fmt::format("bias_forward/ours/B{}x{}", b, classes), [=](benchmark::State& s) {
      Dev z(static_cast<std::size_t>(b * classes) * 4), bias(classes * 4);
      run(s, 8.0 * static_cast<double>(b * classes),
          [&] { mlp::kernels::bias_forward(z.f(), bias.f(), b, classes, g_stream); });
    });
    reg(fmt::format("bias_forward/cudnn_add/B{}x{}", b, classes), [=](benchmark::State& s) {
      Dev z(static_cast<std::size_t>(b * classes) * 4), bias(classes * 4);
      Tensor tz(b, classes), tb(1, classes);
      run(s, 8.0 * static_cast<double>(b * classes),
          [&] { CUDNN_CHECK(dnn().cudnnAddTensor(g_cudnn, &one, tb.d, bias.p, &one, tz.d, z.p)); });
    });

    reg(fmt::format("relu_backward/ours/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev g(static_cast<std::size_t>(n) * 4), act(static_cast<std::size_t>(n) * 4);
      fill(g, static_cast<std::size_t>(n), 0.1f);
      fill(act, static_cast<std::size_t>(n), 0.1f);
      run(s, 12.0 * n,
          [&] { mlp::kernels::relu_backward(g.f(), act.f(), static_cast<int64_t>(n), g_stream); });
    });
    reg(fmt::format("relu_backward/cudnn/B{}x{}", b, hid), [=](benchmark::State& s) {
      // cuDNN reads y, dy and x and writes dx: one more input than ours.
      Dev y(static_cast<std::size_t>(n) * 4), dy(static_cast<std::size_t>(n) * 4);
      fill(y, static_cast<std::size_t>(n), 0.1f);
      fill(dy, static_cast<std::size_t>(n), 0.1f);
      Tensor t(b, hid);
      Relu relu;
      run(s, 16.0 * n, [&] {
        CUDNN_CHECK(dnn().cudnnActivationBackward(g_cudnn, relu.d, &one, t.d, y.p, t.d, dy.p, t.d,
                                                  y.p, &zero, t.d, dy.p));
      });
    });

    reg(fmt::format("bias_grad/ours/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev g(static_cast<std::size_t>(n) * 4), db(hid * 4);
      fill(g, static_cast<std::size_t>(n), 0.1f);
      run(s, 4.0 * n, [&] { mlp::kernels::bias_grad(g.f(), db.f(), b, hid, g_stream); });
    });
    reg(fmt::format("bias_grad/cudnn_conv_bwd_bias/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev g(static_cast<std::size_t>(n) * 4), db(hid * 4);
      fill(g, static_cast<std::size_t>(n), 0.1f);
      Tensor tg(b, hid), tdb(1, hid);
      run(s, 4.0 * n, [&] {
        CUDNN_CHECK(
            dnn().cudnnConvolutionBackwardBias(g_cudnn, &one, tg.d, g.p, &zero, tdb.d, db.p));
      });
    });

    const double lg = static_cast<double>(b * classes);
    reg(fmt::format("softmax_xent/ours_fused/B{}x{}", b, classes), [=](benchmark::State& s) {
      Dev x(static_cast<std::size_t>(lg) * 4), d(static_cast<std::size_t>(lg) * 4),
          labels(static_cast<std::size_t>(b)), metrics(2 * sizeof(double));
      fill(x, static_cast<std::size_t>(lg), 0.5f);
      run(s, 8.0 * lg + static_cast<double>(b), [&] {
        mlp::kernels::softmax_xent(x.f(), labels.u8(), d.f(), static_cast<double*>(metrics.p), b,
                                   classes, g_stream);
      });
    });
    reg(fmt::format("softmax_xent/ours_grid_with_db/B{}x{}", b, classes), [=](benchmark::State& s) {
      Dev x(static_cast<std::size_t>(lg) * 4), d(static_cast<std::size_t>(lg) * 4),
          labels(static_cast<std::size_t>(b)), metrics(2 * sizeof(double)), db(classes * 4),
          ws(mlp::kernels::softmax_xent_workspace_bytes());
      fill(x, static_cast<std::size_t>(lg), 0.5f);
      const auto work = mlp::kernels::softmax_xent_workspace(ws.p);
      run(s, 8.0 * lg + static_cast<double>(b), [&] {
        mlp::kernels::softmax_xent_grid(x.f(), labels.u8(), d.f(), db.f(),
                                        static_cast<double*>(metrics.p), nullptr, b, classes, work,
                                        g_stream);
      });
    });
    reg(fmt::format("relu_backward_bias_grad/ours_fused/B{}x{}", b, hid), [=](benchmark::State& s) {
      Dev g(static_cast<std::size_t>(n) * 4), a(static_cast<std::size_t>(n) * 4), db(hid * 4);
      fill(g, static_cast<std::size_t>(n), 0.1f);
      fill(a, static_cast<std::size_t>(n), 0.5f);
      run(s, 12.0 * n,
          [&] { mlp::kernels::relu_backward_bias_grad(g.f(), a.f(), db.f(), b, hid, g_stream); });
    });
    reg(fmt::format("softmax_xent/cudnn_softmax/B{}x{}", b, classes), [=](benchmark::State& s) {
      Dev x(static_cast<std::size_t>(lg) * 4), y(static_cast<std::size_t>(lg) * 4);
      fill(x, static_cast<std::size_t>(lg), 0.5f);
      Tensor t(b, classes);
      run(s, 8.0 * lg, [&] {
        CUDNN_CHECK(dnn().cudnnSoftmaxForward(g_cudnn, CUDNN_SOFTMAX_ACCURATE,
                                              CUDNN_SOFTMAX_MODE_INSTANCE, &one, t.d, x.p, &zero,
                                              t.d, y.p));
      });
    });
  }
  // One layer's Adam as the step plan runs it (500x500 + 500 floats, float4, no counter).
  reg("adam_update/ours_vec4/250500", [](benchmark::State& s) {
    const int64_t n = 250500;
    const auto bytes = static_cast<std::size_t>(n) * 4;
    Dev p(bytes), g(bytes), m(bytes), v(bytes), state(sizeof(mlp::OptimizerState));
    fill(g, static_cast<std::size_t>(n), 0.01f);
    mlp::OptimizerState initial;
    initial.step = 1;
    MLP_CUDA_CHECK(cudaMemcpy(state.p, &initial, sizeof(initial), cudaMemcpyHostToDevice));
    run(s, 28.0 * n, [&] {
      mlp::kernels::adam_update(p.f(), g.f(), m.f(), v.f(), n,
                                static_cast<const mlp::OptimizerState*>(state.p), g_stream);
    });
  });
  // Adam over the network's flat buffer (784-500-500-500-10, 898,510 floats).
  reg("adam_step/ours/898510", [](benchmark::State& s) {
    const int64_t n = 898510;
    const auto bytes = static_cast<std::size_t>(n) * 4;
    Dev p(bytes), g(bytes), m(bytes), v(bytes), state(sizeof(mlp::OptimizerState));
    fill(g, static_cast<std::size_t>(n), 0.01f);
    const mlp::OptimizerState initial;  // default Adam, step 0
    MLP_CUDA_CHECK(cudaMemcpy(state.p, &initial, sizeof(initial), cudaMemcpyHostToDevice));
    run(s, 28.0 * n, [&] {
      mlp::kernels::adam_step(p.f(), g.f(), m.f(), v.f(), n,
                              static_cast<mlp::OptimizerState*>(state.p), g_stream);
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  const std::string why = mlp::cuda_unavailable_reason();
  if (!why.empty()) {
    std::printf("cuda_kernels_bench: skipped: %s\n", why.c_str());
    return 0;
  }
  try {
    const mlp::PeakInfo peak = mlp::cuda_peak(0);
    g_peak_gbps = peak.gbps;
    MLP_CUDA_CHECK(cudaSetDevice(0));
    MLP_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    std::string cudnn_status = dnn().error;
    if (cudnn_status.empty()) {
      CUDNN_CHECK(dnn().cudnnCreate(&g_cudnn));
      CUDNN_CHECK(dnn().cudnnSetStream(g_cudnn, g_stream));
      cudnn_status = fmt::format("{} ({})", dnn().cudnnGetVersion(), dnn().library);
    } else {
      std::printf("cuda_kernels_bench: cuDNN rows skipped: %s\n", cudnn_status.c_str());
    }
    benchmark::AddCustomContext("cuda_peak", fmt::format("{:.0f} GB/s, {:.0f} GFLOP/s FP32 ({})",
                                                         peak.gbps, peak.gflops, peak.source));
    benchmark::AddCustomContext("cudnn", cudnn_status);
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (g_cudnn) dnn().cudnnDestroy(g_cudnn);
    cudaStreamDestroy(g_stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_kernels_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
