// The fused engine's kernel on a GPU (skipped without one), against the CPU reference and the
// CPU emulation. Which comparisons are bitwise and why (docs/fused-engine.md):
//   - kernel vs emulation: bitwise. Same plan, same tiles, every output one fma chain in the
//     same order (explicit __fmaf_rn on the GPU, correctly rounded fmaf on the host), the same
//     exp_f/log_f recipes, integer-counted reductions in slot order; only adam_factors' double
//     pow could differ in its last bit, and rounding to float hides that.
//   - kernel vs CPU reference (Model on the CPU backend): tolerance, test_cuda_training's formula
//     (the reference's GEMM sums in another order, with libm's exp/log).
//   - two runs, and N launches of one step vs one launch of N steps: bitwise.
//   - the engine behind --engine fused: the kernel's StepRunner vs the emulation's (bitwise),
//     the forward-only evaluation plan, and one epoch on MNIST >= 96% (FusedTrainer).
// Run under compute-sanitizer --tool racecheck / synccheck with --gtest_filter='FusedCuda*'.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fused/fused_evaluate.h"
#include "fused/fused_runner.h"
#include "fused/fused_trainer.h"
#include "fused_test_util.h"
#include "kernels/cuda_check.cuh"
#include "kernels/fused_step.cuh"
#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/evaluate.h"
#include "mlp/model.h"
#include "mlp/trainer.h"

namespace mlp {
namespace {

using fused_test::Batch;

class FusedCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = fused_ref::cuda_unavailable();
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device: " << reason;
  }
};

// A device allocation holding a copy of a host vector.
class Dev {
 public:
  template <class T>
  explicit Dev(const std::vector<T>& host) : bytes_(host.size() * sizeof(T)) {
    MLP_CUDA_CHECK(cudaMalloc(&p_, bytes_ + 16));
    MLP_CUDA_CHECK(cudaMemset(p_, 0, bytes_ + 16));
    if (bytes_) MLP_CUDA_CHECK(cudaMemcpy(p_, host.data(), bytes_, cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  template <class T>
  void to(std::vector<T>& host) const {
    MLP_CUDA_CHECK(cudaMemcpy(host.data(), p_, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_;
};

kernels::FusedLaunch prepare(const std::vector<int64_t>& sizes, int64_t batch) {
  return kernels::fused_prepare(sizes.data(), static_cast<int32_t>(sizes.size()), batch, false);
}

// `launches` launches of `steps_per_launch` steps each, on the device; like fused_test::emulate.
fused_test::Run run_gpu(const kernels::FusedLaunch& L, const ModelState& before, const AdamHyper& h,
                        const Batch& data, int64_t launches = 1, int64_t steps_per_launch = 1,
                        const std::vector<int32_t>& indices = {}) {
  const fused::Plan& p = L.plan;
  fused_test::Run r;
  r.after = before;
  r.grads.assign(before.params.size(), 0.0f);
  r.workspace.assign(static_cast<std::size_t>(fused::workspace_bytes(p) / 4), 0.0f);
  OptimizerState st;
  st.step = before.step;
  st.adam = h;
  Dev images(data.images), labels(data.labels), idx(indices), params(before.params), m(before.m),
      v(before.v), grads(r.grads), work(r.workspace), state(std::vector<OptimizerState>{st}),
      metrics(std::vector<double>{0.0, 0.0});
  for (int64_t k = 0; k < launches; ++k) {
    const fused::StepArgs a{
        images.as<uint8_t>(),
        labels.as<uint8_t>(),
        indices.empty() ? nullptr : idx.as<int32_t>() + k * steps_per_launch * p.batch,
        steps_per_launch,
        params.as<float>(),
        m.as<float>(),
        v.as<float>(),
        state.as<OptimizerState>(),
        metrics.as<double>(),
        work.as<void>(),
        grads.as<float>()};
    kernels::fused_step(L, a, nullptr);
  }
  MLP_CUDA_CHECK(cudaDeviceSynchronize());
  params.to(r.after.params);
  m.to(r.after.m);
  v.to(r.after.v);
  grads.to(r.grads);
  work.to(r.workspace);
  std::vector<OptimizerState> st_out(1);
  state.to(st_out);
  r.after.step = st_out[0].step;
  std::vector<double> mt(2);
  metrics.to(mt);
  r.metrics[0] = mt[0];
  r.metrics[1] = mt[1];
  const fused::LayerPlan& last = p.layer[p.layers - 1];
  const float* lg = r.workspace.data() + p.counter_floats + last.act_off;
  r.logits.assign(lg, lg + int64_t{p.batch} * last.fan_out);
  return r;
}

const std::vector<int64_t> kMnist{784, 500, 500, 500, 10};

// $MNIST_DIR, else data/mnist in the source tree (as testing.h).
std::string mnist_dir() {
  const char* env = std::getenv("MNIST_DIR");
  return env && *env ? env : std::string(MLP_SOURCE_DIR) + "/data/mnist";
}
bool mnist_present(const std::string& dir) {
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"})
    if (!std::filesystem::exists(dir + "/" + f) && !std::filesystem::exists(dir + "/" + f + ".gz"))
      return false;
  return true;
}

Batch safe_batch(const std::vector<int64_t>& sizes, int64_t batch, const ModelState& s) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    Batch b = fused_test::random_batch(seed, batch, sizes.front(), sizes.back());
    if (fused_test::relu_margin(sizes, s.params, b, batch) >= 1e-5) return b;
  }
  ADD_FAILURE() << "no batch keeps every pre-activation 1e-5 away from 0";
  return {};
}

ModelState fresh(const std::vector<int64_t>& sizes, uint64_t seed) {
  ModelState s;
  s.params = fused_ref::he_params(sizes, seed);
  s.m.assign(s.params.size(), 0.0f);
  s.v.assign(s.params.size(), 0.0f);
  return s;
}

void expect_bitwise(const fused_test::Run& a, const fused_test::Run& b, const std::string& what) {
  EXPECT_TRUE(fused_test::same_bits(a.after.params, b.after.params)) << what << ": params";
  EXPECT_TRUE(fused_test::same_bits(a.after.m, b.after.m)) << what << ": m";
  EXPECT_TRUE(fused_test::same_bits(a.after.v, b.after.v)) << what << ": v";
  EXPECT_TRUE(fused_test::same_bits(a.grads, b.grads)) << what << ": gradients";
  EXPECT_TRUE(fused_test::same_bits(a.logits, b.logits)) << what << ": logits";
  EXPECT_EQ(std::memcmp(a.metrics, b.metrics, sizeof a.metrics), 0) << what << ": metrics";
  EXPECT_EQ(a.after.step, b.after.step) << what;
}

TEST_F(FusedCuda, OneStepMatchesCpuReference) {
  const kernels::FusedLaunch L = prepare(kMnist, 100);
  const ModelState before = fresh(kMnist, 1);
  const Batch b = safe_batch(kMnist, 100, before);
  const fused_ref::StepResult want =
      fused_ref::cpu_step(kMnist, 100, before, {}, b.images, b.labels, false);
  fused_test::expect_step_matches(L.plan, run_gpu(L, before, {}, b), want, before, {});
}

TEST_F(FusedCuda, OneStepEqualsEmulationBitwise) {
  for (const auto& [sizes, batch] : {std::pair<std::vector<int64_t>, int64_t>{kMnist, 100},
                                     {{7, 13, 5, 3}, 10},
                                     {{300, 97, 33, 10}, 17}}) {
    const kernels::FusedLaunch L = prepare(sizes, batch);
    const ModelState before = fresh(sizes, 2);
    const Batch b = fused_test::random_batch(5, batch, sizes.front(), sizes.back());
    expect_bitwise(run_gpu(L, before, {}, b), fused_test::emulate(L.plan, before, {}, b),
                   "kernel vs emulation, " + std::to_string(sizes.front()) + " inputs");
  }
}

TEST_F(FusedCuda, TwoRunsBitwiseIdentical) {
  const kernels::FusedLaunch L = prepare(kMnist, 100);
  const ModelState before = fresh(kMnist, 3);
  const Batch b = fused_test::random_batch(9, 100, 784, 10);
  expect_bitwise(run_gpu(L, before, {}, b), run_gpu(L, before, {}, b), "second run");
}

// Per-step mean loss vs the CPU reference: atol 2e-5, rtol 2e-4 (test_cuda_training's bounds);
// 20 launches of one step equal one launch of 20 steps, bit for bit.
TEST_F(FusedCuda, TwentyStepsMatchCpuLossesAndOneLaunchOfTwenty) {
  const int64_t steps = 20, B = 100;
  Batch data;
  const std::string dir = mnist_dir();
  if (mnist_present(dir)) {
    const Dataset train = load_split(dir, Split::kTrain);
    data.images.assign(train.images.begin(), train.images.begin() + steps * B * 784);
    data.labels.assign(train.labels.begin(), train.labels.begin() + steps * B);
  } else {
    data = fused_test::random_batch(100, steps * B, 784, 10);
  }
  const kernels::FusedLaunch L = prepare(kMnist, B);
  const ModelState s0 = fresh(kMnist, 7);
  ModelState gpu = s0, cpu = s0;
  for (int64_t s = 0; s < steps; ++s) {
    Batch bs;
    bs.images.assign(data.images.begin() + s * B * 784, data.images.begin() + (s + 1) * B * 784);
    bs.labels.assign(data.labels.begin() + s * B, data.labels.begin() + (s + 1) * B);
    const fused_test::Run g = run_gpu(L, gpu, {}, bs);
    const fused_ref::StepResult c =
        fused_ref::cpu_step(kMnist, B, cpu, {}, bs.images, bs.labels, false);
    gpu = g.after;
    cpu = c.after;
    const double got = g.metrics[0] / B, want = c.loss_sum / B;
    EXPECT_TRUE(std::abs(got - want) <= 2e-5 + 2e-4 * std::abs(want))
        << "step " << s + 1 << ": " << got << " vs " << want;
  }
  std::vector<int32_t> idx(static_cast<std::size_t>(steps * B));
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
  const fused_test::Run one = run_gpu(L, s0, {}, data, 1, steps, idx);
  const fused_test::Run many = run_gpu(L, s0, {}, data, steps, 1, idx);
  expect_bitwise(one, many, "1 launch of 20 steps vs 20 launches");
  EXPECT_TRUE(fused_test::same_bits(one.after.params, gpu.params));
  EXPECT_EQ(one.after.step, steps);
}

TEST_F(FusedCuda, RefusesUnsupportedShapesWithExitCodeSix) {
  try {
    prepare({784, 500, 10}, 100000);
    ADD_FAILURE() << "a batch of 100000 cannot fit a block's shared memory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kDevice);
    EXPECT_NE(std::string(e.what()).find("--engine fused"), std::string::npos) << e.what();
  }
}

// ---- the engine behind --engine fused: runner, trainer, evaluation ------------------------

// The kernel's runner and the emulation's, through the StepRunner seam FusedTrainer uses: the
// same order uploaded once, two launches (1 + 1 steps, the second reading the order at an
// offset), the same bits. Two emulated MNIST steps keep it short under compute-sanitizer.
TEST_F(FusedCuda, KernelRunnerEqualsTheEmulationRunnerBitwise) {
  int sms = 0;
  MLP_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  if (sms != fused::kEmulatedGrid)
    GTEST_SKIP() << "the emulation plans for " << fused::kEmulatedGrid << " SMs, this GPU has "
                 << sms << " (different tiles, different summation orders)";
  const int64_t B = 100, steps = 2;
  const Batch data = fused_test::random_batch(41, 4 * B, 784, 10);
  Dataset ds;
  ds.count = 4 * B;
  ds.rows = ds.cols = 28;
  ds.images = data.images;
  ds.labels = data.labels;
  std::vector<int32_t> order(static_cast<std::size_t>(ds.count));
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int32_t>((i * 7) % order.size());
  const ModelState s0 = fresh(kMnist, 11);
  std::unique_ptr<Backend> be = make_cuda_backend({});  // sets the device
  ModelState got[2];
  double metrics[2][2];
  for (int k = 0; k < 2; ++k) {
    auto runner = fused::make_step_runner(k == 0 ? BackendKind::kCuda : BackendKind::kCpu, kMnist,
                                          B, false, false);
    runner->set_data(ds);
    runner->set_order(order);
    runner->set_state(s0, AdamHyper{}, LrSchedule{});
    runner->set_metrics(0, 0);
    runner->run(0, 1);
    runner->run(1, 1);
    runner->metrics(metrics[k]);
    got[k] = runner->state();
  }
  EXPECT_TRUE(fused_test::same_bits(got[0].params, got[1].params));
  EXPECT_TRUE(fused_test::same_bits(got[0].m, got[1].m));
  EXPECT_TRUE(fused_test::same_bits(got[0].v, got[1].v));
  EXPECT_EQ(got[0].step, steps);
  EXPECT_EQ(got[1].step, steps);
  EXPECT_EQ(std::memcmp(metrics[0], metrics[1], sizeof metrics[0]), 0);
}

// eval --engine fused's forward-only plan on the GPU against the same plan emulated on the CPU
// (bitwise on a 132-SM device) and against the CPU reference's loss (tolerance).
TEST_F(FusedCuda, ForwardOnlyEvaluationMatchesEmulationAndReference) {
  const Batch data = fused_test::random_batch(43, 250, 784, 10);
  Dataset ds;
  ds.count = 250;  // one batch of 200 and a remainder plan of 50
  ds.rows = ds.cols = 28;
  ds.images = data.images;
  ds.labels = data.labels;
  const ModelState s = fresh(kMnist, 12);
  std::unique_ptr<Backend> be = make_cuda_backend({});
  const EvalResult gpu =
      fused::FusedEvaluator(BackendKind::kCuda, kMnist, 200, false, ds).evaluate(s.params);
  std::unique_ptr<Backend> cpu = make_cpu_backend({});
  Model ref(*cpu, kMnist, 200, AdamHyper{}, false);
  ref.set_state(s);
  const EvalResult want = evaluate(*cpu, ref, DeviceDataset(*cpu, ds));
  EXPECT_EQ(gpu.count, 250);
  EXPECT_TRUE(std::abs(gpu.loss - want.loss) <= 1e-5 * std::abs(want.loss))
      << gpu.loss << " vs " << want.loss;
  EXPECT_TRUE(std::abs(gpu.accuracy - want.accuracy) <= 2.0 / 250) << "a tie may move a row";
  int sms = 0;
  MLP_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  if (sms == fused::kEmulatedGrid) {
    const EvalResult emu =
        fused::FusedEvaluator(BackendKind::kCpu, kMnist, 200, false, ds).evaluate(s.params);
    EXPECT_EQ(gpu.loss, emu.loss) << "bitwise";
    EXPECT_EQ(gpu.confusion, emu.confusion);
  }
}

// The bar: one epoch of `train --engine fused` on MNIST, >= 96% on the test set.
TEST_F(FusedCuda, OneEpochOnMnistReaches96Percent) {
  const std::string dir = mnist_dir();
  if (!mnist_present(dir)) GTEST_SKIP() << "no MNIST in " << dir << " (set MNIST_DIR)";
  const Dataset train = load_split(dir, Split::kTrain), test = load_split(dir, Split::kTest);
  std::unique_ptr<Backend> be = make_cuda_backend({});
  Model model(*be, kMnist, 100, AdamHyper{}, false);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, 1));
  TrainerOptions to;
  to.epochs = 1;
  to.batch_size = 100;
  to.seed = 1;
  fused::FusedTrainer trainer(*be, model, false, train, &test, to);
  const std::vector<EpochStats> epochs = trainer.run({});
  ASSERT_EQ(epochs.size(), 1u);
  ASSERT_TRUE(epochs[0].complete && epochs[0].evaluated);
  EXPECT_GE(epochs[0].test_accuracy, 0.96) << "test loss " << epochs[0].test_loss;
  EXPECT_TRUE(std::isfinite(epochs[0].loss) && epochs[0].loss < 0.5) << epochs[0].loss;
  EXPECT_EQ(model.state().step, 600) << "the Model holds the trained state";
  std::printf("fused 1 epoch: test accuracy %.4f, %.1f us per step (training loop)\n",
              epochs[0].test_accuracy, 1e6 * epochs[0].seconds / 600);
}

}  // namespace
}  // namespace mlp
