// The whole network on CUDA against the CPU backend, and CUDA Graph replay
// against eager launches:
//   - one full step (loss, logits, every gradient, the updated parameters);
//   - 20 steps from the same seed give the CPU's losses within tolerance;
//   - a captured step replayed N times gives the same bits as N eager steps,
//     for a Model and for the Trainer (streaming, fences, one graph per slot);
//   - one epoch on real MNIST reaches >= 0.96 test accuracy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "cli/run_config.h"
#include "cuda_testing.h"
#include "mlp/dataset.h"
#include "mlp/model.h"
#include "mlp/trainer.h"

namespace mlp {
namespace {

using cuda_testing::all_close;
using cuda_testing::CudaTest;
using cuda_testing::max_abs;
using testing::DeviceVec;

const std::vector<int64_t> kSizes{784, 500, 500, 500, 10};
constexpr int64_t kBatch = 100;
constexpr int64_t kPixels = 784;

struct Batch {
  std::vector<uint8_t> images, labels;
};

Batch synthetic_batch(uint64_t seed, int64_t batch) {
  Pcg32 rng(seed, 3);
  Batch b;
  b.images.resize(static_cast<std::size_t>(batch * kPixels));
  for (auto& x : b.images) x = static_cast<uint8_t>(rng.below(256));
  for (int64_t i = 0; i < batch; ++i) b.labels.push_back(static_cast<uint8_t>(rng.below(10)));
  return b;
}

std::vector<float> download_floats(Backend& be, const float* p, int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n));
  be.download(out.data(), p, out.size() * sizeof(float));
  return out;
}

// Smallest |pre-activation| over the hidden layers, from a CPU float forward.
// A pre-activation within rounding distance of 0 can land on different sides
// of the ReLU on CPU and GPU, which legitimately changes a whole gradient
// column; the full-step test picks a batch whose margin rules that out.
float hidden_margin(const ParamLayout& layout, const std::vector<float>& params, const Batch& b) {
  Backend& cpu = cuda_testing::cpu_backend();
  DeviceVec<uint8_t> images(cpu, b.images);
  DeviceVec<float> p(cpu, params);
  auto a = std::make_unique<DeviceVec<float>>(cpu, std::vector<float>(kBatch * kPixels));
  cpu.u8_to_float(images.get(), {a->get(), kBatch, kPixels}, false);
  float margin = std::numeric_limits<float>::infinity();
  for (int64_t l = 0; l + 1 < layout.layers(); ++l) {
    const int64_t in = layout.fan_in(l), out = layout.fan_out(l);
    auto z = std::make_unique<DeviceVec<float>>(cpu, std::vector<float>(kBatch * out));
    cpu.gemm(Trans::kNo, Trans::kNo, 1.0f, {a->get(), kBatch, in},
             {p.get() + layout.weight_offset(l), in, out}, 0.0f, {z->get(), kBatch, out});
    cpu.bias_forward({z->get(), kBatch, out}, p.get() + layout.bias_offset(l));
    for (float x : z->download()) margin = std::min(margin, std::abs(x));
    cpu.bias_relu_forward({z->get(), kBatch, out}, std::vector<float>(out, 0.0f).data());
    a = std::move(z);
  }
  return margin;
}

// ---- one full step ---------------------------------------------------------------------
// Tolerances (one formula, |cuda - cpu| <= atol + rtol*|cpu|):
//   loss sum     atol 1e-4, rtol 1e-5; correct count exact
//   logits, every weight and bias gradient tensor T: atol 1e-5 * max|T|, rtol 1e-4
//     (a float64-checked simulation of this step with reordered sums differs by
//     4e-7 * max|T|, so this leaves 25x headroom while a wrong op is off by O(1));
//   updated parameters: step 1 of Adam moves p by u(g) = lr * g / (|g| + eps)
//     (bias-corrected), monotone in g, so a gradient within +-gtol moves p within
//     [u(g - gtol), u(g + gtol)]: atol = that spread + 1e-9, rtol 1e-6.
TEST_F(CudaTest, OneStepMatchesCpuLossGradientsAndUpdate) {
  auto cpu_be = make_cpu_backend({});
  const AdamHyper hyper;
  Model mc(*cpu_be, kSizes, kBatch, hyper, false), mg(gpu(), kSizes, kBatch, hyper, false);
  const auto init = initial_params(mc.layout(), InitScheme::kHe, 1);
  mc.set_params(init);
  mg.set_params(init);

  Batch b;
  float margin = 0.0f;
  uint64_t seed = 0;
  for (seed = 1; seed <= 400 && margin < 1e-5f; ++seed) {
    b = synthetic_batch(seed, kBatch);
    margin = hidden_margin(mc.layout(), init, b);
  }
  ASSERT_GE(margin, 1e-5f) << "no candidate batch keeps every pre-activation 1e-5 away from 0";
  std::printf("[ info ] full step: batch seed %llu, smallest |pre-activation| %.3g\n",
              static_cast<unsigned long long>(seed - 1), static_cast<double>(margin));

  struct Side {
    Backend& be;
    Model& model;
    std::vector<float> logits, grads, params;
    double metrics[2] = {0, 0};
  };
  Side sides[2] = {{*cpu_be, mc, {}, {}, {}}, {gpu(), mg, {}, {}, {}}};
  for (Side& s : sides) {
    DeviceVec<uint8_t> images(s.be, b.images), labels(s.be, b.labels);
    DeviceVec<double> metrics(s.be, {0.0, 0.0});
    s.model.forward(images.get(), kBatch);
    s.logits = download_floats(s.be, s.model.logits(kBatch).data, kBatch * 10);
    s.model.backward(labels.get(), kBatch, metrics.get());
    s.grads = download_floats(s.be, s.model.grads(), s.model.layout().total_floats());
    s.model.update();
    s.params = download_floats(s.be, s.model.params(), s.model.layout().total_floats());
    const auto m = metrics.download();
    s.metrics[0] = m[0];
    s.metrics[1] = m[1];
  }
  const Side &c = sides[0], &g = sides[1];
  EXPECT_TRUE(testing::near(g.metrics[kMetricLossSum], c.metrics[kMetricLossSum], 1e-4, 1e-5));
  EXPECT_EQ(g.metrics[kMetricCorrect], c.metrics[kMetricCorrect]);
  EXPECT_TRUE(all_close(g.logits, c.logits, 1e-5 * max_abs(c.logits), 1e-4)) << "logits";

  const ParamLayout& layout = mc.layout();
  const double lr = hyper.lr, eps = hyper.eps;
  const auto u = [&](double x) { return lr * x / (std::abs(x) + eps); };
  for (int64_t l = 0; l < layout.layers(); ++l) {
    for (bool bias : {false, true}) {
      const int64_t off = bias ? layout.bias_offset(l) : layout.weight_offset(l);
      const int64_t n = bias ? layout.fan_out(l) : layout.fan_in(l) * layout.fan_out(l);
      const auto slice = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + off, v.begin() + off + n);
      };
      const std::string what = (bias ? "b" : "W") + std::to_string(l);
      const auto gc = slice(c.grads), gg = slice(g.grads);
      const double gtol_abs = 1e-5 * max_abs(gc), grtol = 1e-4;
      EXPECT_TRUE(all_close(gg, gc, gtol_abs, grtol)) << "gradient " << what;
      std::vector<double> ptol(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < ptol.size(); ++i) {
        const double gtol = gtol_abs + grtol * std::abs(gc[i]);
        ptol[i] =
            std::max(std::abs(u(gc[i] + gtol) - u(gc[i])), std::abs(u(gc[i] - gtol) - u(gc[i]))) +
            1e-9;
      }
      EXPECT_TRUE(all_close(slice(g.params), slice(c.params), ptol, 1e-6))
          << "updated parameters " << what;
    }
  }
}

// ---- 20 steps --------------------------------------------------------------------------------
// Per-step mean loss: atol 2e-5, rtol 2e-4. The same simulation (20 Adam steps,
// reordered float sums, real MNIST) drifted by at most 2.3e-7 relative.
TEST_F(CudaTest, TwentyStepsMatchCpuLosses) {
  const std::string dir = testing::mnist_dir();
  const bool real = testing::split_files_present(dir);
  std::vector<Batch> batches;
  if (real) {
    const Dataset train = load_split(dir, Split::kTrain);
    for (int64_t s = 0; s < 20; ++s) {
      Batch b;
      b.images.assign(train.images.begin() + s * kBatch * kPixels,
                      train.images.begin() + (s + 1) * kBatch * kPixels);
      b.labels.assign(train.labels.begin() + s * kBatch, train.labels.begin() + (s + 1) * kBatch);
      batches.push_back(std::move(b));
    }
  } else {
    for (uint64_t s = 0; s < 20; ++s) batches.push_back(synthetic_batch(100 + s, kBatch));
  }
  auto cpu_be = make_cpu_backend({});
  Model mc(*cpu_be, kSizes, kBatch, AdamHyper{}, false),
      mg(gpu(), kSizes, kBatch, AdamHyper{}, false);
  const auto init = initial_params(mc.layout(), InitScheme::kHe, 7);
  mc.set_params(init);
  mg.set_params(init);
  double worst = 0.0;
  for (std::size_t s = 0; s < batches.size(); ++s) {
    double loss[2];
    int side = 0;
    for (Model* m : {&mc, &mg}) {
      Backend& be = side == 0 ? *cpu_be : gpu();
      DeviceVec<uint8_t> images(be, batches[s].images), labels(be, batches[s].labels);
      DeviceVec<double> metrics(be, {0.0, 0.0});
      m->train_step(images.get(), labels.get(), kBatch, metrics.get());
      loss[side++] = metrics.download()[kMetricLossSum] / kBatch;
    }
    worst = std::max(worst, std::abs(loss[1] - loss[0]) / std::abs(loss[0]));
    EXPECT_TRUE(testing::near(loss[1], loss[0], 2e-5, 2e-4)) << "step " << s + 1;
  }
  std::printf("[ info ] 20 steps on %s: worst relative loss difference %.3g\n",
              real ? "real MNIST" : "synthetic data", worst);
  EXPECT_EQ(mg.state().step, 20);
}

// ---- graph replay == eager
// ------------------------------------------------------------------------ Bitwise. A graph changes
// how the launches are submitted, not what runs: the same kernels with the same launch
// configurations and the same cuBLAS calls (user workspace, atomics off) in the same stream order,
// and no kernel adds floats atomically (the loss kernel's last-block ticket is an
// integer atomic; the partials are added in block order), so every result is a deterministic
// function of its inputs.
TEST_F(CudaTest, GraphReplayEqualsEagerBitwise) {
  const AdamHyper hyper;
  Model eager(gpu(), kSizes, kBatch, hyper, false), graphed(gpu(), kSizes, kBatch, hyper, false);
  const auto init = initial_params(eager.layout(), InitScheme::kHe, 11);
  eager.set_params(init);
  graphed.set_params(init);
  Buffer input = gpu().alloc(static_cast<std::size_t>(kBatch * (kPixels + 1)));
  const uint8_t* images = input.as<uint8_t>();
  const uint8_t* labels = images + kBatch * kPixels;
  DeviceVec<double> me(gpu(), {0.0, 0.0}), mg(gpu(), {0.0, 0.0});
  {  // As the Trainer does: one eager step of the same shapes first (a scratch
     // model), so no library meets a GEMM shape for the first time inside the
     // capture, whichever tests ran before this one.
    Model warm(gpu(), kSizes, kBatch, hyper, false);
    warm.set_params(init);
    DeviceVec<double> scratch(gpu(), {0.0, 0.0});
    warm.train_step(images, labels, kBatch, scratch.get());
    gpu().synchronize();
  }
  const auto graph = gpu().capture([&] { graphed.train_step(images, labels, kBatch, mg.get()); });
  for (uint64_t s = 0; s < 10; ++s) {
    const Batch b = synthetic_batch(500 + s, kBatch);
    std::vector<uint8_t> bytes = b.images;
    bytes.insert(bytes.end(), b.labels.begin(), b.labels.end());
    gpu().upload(input.data(), bytes.data(), bytes.size());  // ordered on the compute stream
    eager.train_step(images, labels, kBatch, me.get());
    gpu().replay(*graph);
  }
  const ModelState se = eager.state(), sg = graphed.state();
  EXPECT_EQ(se.step, 10);
  EXPECT_EQ(sg.step, 10) << "the graph must advance the device-side Adam step counter";
  EXPECT_EQ(me.download(), mg.download()) << "loss sums / correct counts differ";
  for (const auto& [a, b, name] : {std::tuple{&se.params, &sg.params, "params"},
                                   std::tuple{&se.m, &sg.m, "m"}, std::tuple{&se.v, &sg.v, "v"}}) {
    ASSERT_EQ(a->size(), b->size());
    std::size_t diff = 0;
    double worst = 0.0;
    for (std::size_t i = 0; i < a->size(); ++i)
      if (std::memcmp(&(*a)[i], &(*b)[i], sizeof(float)) != 0) {
        ++diff;
        worst = std::max(worst, std::abs(static_cast<double>((*a)[i]) - (*b)[i]));
      }
    EXPECT_EQ(diff, 0u) << name << ": " << diff << " floats differ, max |diff| " << worst;
  }
}

// The Trainer drives uploads on the copy stream, fences from the loader thread,
// and one graph per input slot; with and without graphs it must give the same bits.
Dataset synthetic_dataset(int64_t count, uint64_t seed) {
  Dataset d;
  d.count = count;
  d.rows = d.cols = 28;
  const Batch b = synthetic_batch(seed, count);
  d.images = b.images;
  d.labels = b.labels;
  return d;
}

TEST_F(CudaTest, TrainerWithGraphsEqualsEagerBitwise) {
  const Dataset train = synthetic_dataset(1000, 61), test = synthetic_dataset(300, 62);
  std::vector<EpochStats> stats[2];
  ModelState state[2];
  for (int use_graph = 0; use_graph < 2; ++use_graph) {
    cli::RunConfig cfg;
    cfg.epochs = 2;
    cfg.seed = 5;
    cfg.use_graph = use_graph == 1;
    Model model(gpu(), kSizes, cfg.batch_size, cfg.adam, false);
    model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
    Trainer trainer(gpu(), model, train, &test, cli::trainer_options(cfg));
    // Else the "graph" run would silently be a second eager run, and equal.
    if (use_graph) {
      EXPECT_EQ(trainer.graph_fallback(), "") << "capture failed; trained eagerly";
    }
    TrainListener quiet;
    stats[use_graph] = trainer.run({&quiet});
    state[use_graph] = model.state();
  }
  ASSERT_EQ(stats[0].size(), 2u);
  ASSERT_EQ(stats[1].size(), 2u);
  for (std::size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(stats[0][e].steps, 10);
    EXPECT_EQ(stats[1][e].loss, stats[0][e].loss) << "epoch " << e + 1;
    EXPECT_EQ(stats[1][e].train_accuracy, stats[0][e].train_accuracy) << "epoch " << e + 1;
    EXPECT_EQ(stats[1][e].test_loss, stats[0][e].test_loss) << "epoch " << e + 1;
  }
  EXPECT_EQ(state[0].step, 20);
  EXPECT_EQ(state[1].step, 20);
  EXPECT_TRUE(state[0].params == state[1].params) << "final parameters differ";
}

// ---- real MNIST
// -----------------------------------------------------------------------------------
TEST_F(CudaTest, OneEpochOnMnistReaches96Percent) {
  const std::string dir = testing::mnist_dir();
  if (!testing::split_files_present(dir))
    GTEST_SKIP() << "real MNIST not found in " << dir
                 << " (run tools/fetch-data, or set MNIST_DIR)";
  const Dataset train = load_split(dir, Split::kTrain), test = load_split(dir, Split::kTest);
  cli::RunConfig cfg;
  cfg.epochs = 1;
  Model model(gpu(), kSizes, cfg.batch_size, cfg.adam, false);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(gpu(), model, train, &test, cli::trainer_options(cfg));
  TrainListener quiet;
  const auto stats = trainer.run({&quiet});
  ASSERT_EQ(stats.size(), 1u);
  std::printf(
      "[ info ] 1 epoch on the GPU: loss %.4f, test accuracy %.4f, %.3f s (%.0f samples/s), %s\n",
      stats[0].loss, stats[0].test_accuracy, stats[0].seconds, stats[0].samples_per_sec,
      trainer.graph_fallback().empty() ? "CUDA Graphs"
                                       : ("eager: " + trainer.graph_fallback()).c_str());
  EXPECT_GE(stats[0].test_accuracy, 0.96);
}

}  // namespace
}  // namespace mlp
