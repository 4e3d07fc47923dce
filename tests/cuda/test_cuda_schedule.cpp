// Learning-rate schedules and --log-interval on the GPU:
//   - download_async returns at once and download_ready polls: queued behind a
//     spin kernel the copy is not ready, the host was not blocked, and the bytes
//     land once the stream gets there;
//   - the Adam op, captured once in a CUDA Graph and replayed, moves each
//     parameter by the scheduled lr of each replay's step (the schedule is read
//     from device memory inside the graph, never re-captured), and its factors
//     give the CPU's parameters within float rounding;
//   - the Trainer with a cosine schedule, graph replay and log_interval gives the
//     CPU's interval events: the same steps and lr, losses within tolerance,
//     adding up to the epoch's.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "cuda/cuda_stream.h"  // defines: compute_stream
#include "cuda_testing.h"
#include "mlp/model.h"
#include "mlp/optimizer.h"
#include "mlp/trainer.h"
#include "tests/cuda/spin_kernel.cuh"

namespace mlp {
namespace {

using cuda_testing::CudaTest;
using testing::DeviceVec;
using testing::near;

TEST_F(CudaTest, DownloadAsyncPollsWithoutBlocking) {
  constexpr double kSpinMs = 50.0;
  const std::vector<double> values{3.5, -2.25};
  DeviceVec<double> src(gpu(), values);
  Buffer host = gpu().alloc_host(sizeof(double) * 2);
  cuda_testing::spin_for(kSpinMs, cuda::compute_stream(gpu()));
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t id = gpu().download_async(host.data(), src.get(), sizeof(double) * 2);
  const bool ready_at_once = gpu().download_ready(id);
  const double issue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(ready_at_once) << "queued behind a " << kSpinMs << " ms spin, yet already there";
  EXPECT_LT(issue_ms, 0.5 * kSpinMs) << "download_async or download_ready blocked";
  gpu().synchronize();
  EXPECT_TRUE(gpu().download_ready(id));
  EXPECT_EQ(host.as<double>()[0], 3.5);
  EXPECT_EQ(host.as<double>()[1], -2.25);
  EXPECT_TRUE(testing::throws_error([&] { gpu().download_ready(id + 1000); }, ExitCode::kFailure,
                                    {"download_ready"}));
}

// Constant gradient 1: each Adam step moves a parameter by lr(t) / (1 + eps).
TEST_F(CudaTest, AdamInAReplayedGraphFollowsTheSchedule) {
  OptimizerState st;
  st.adam.lr = 0.01f;
  st.schedule.kind = LrScheduleKind::kStep;
  st.schedule.gamma = 0.5f;
  st.schedule.step_size = 2;
  st.schedule.warmup_steps = 1;
  const int64_t n = 1000;
  const std::vector<float> p0 = testing::random_floats(static_cast<std::size_t>(n), 3);
  const std::vector<float> ones(static_cast<std::size_t>(n), 1.0f), zeros(ones.size(), 0.0f);
  DeviceVec<float> p(gpu(), p0), g(gpu(), ones), m(gpu(), zeros), v(gpu(), zeros);
  DeviceVec<OptimizerState> state(gpu(), {st});
  DeviceVec<float> cp(cpu(), p0), cg(cpu(), ones), cm(cpu(), zeros), cv(cpu(), zeros);
  DeviceVec<OptimizerState> cstate(cpu(), {st});
  {
    // Run the kernels once outside the capture, on scratch copies, as the
    // Trainer's warm-up steps do: with lazy module loading (the default since
    // CUDA 12.2), drivers older than CUDA 12.3's cannot load a kernel while a
    // stream is being captured.
    DeviceVec<float> sp(gpu(), p0), sg(gpu(), ones), sm(gpu(), zeros), sv(gpu(), zeros);
    DeviceVec<OptimizerState> sstate(gpu(), {st});
    gpu().adam_step(sp.get(), sg.get(), sm.get(), sv.get(), n, sstate.get());
    gpu().synchronize();
  }
  const auto graph =
      gpu().capture([&] { gpu().adam_step(p.get(), g.get(), m.get(), v.get(), n, state.get()); });
  // t = 1: warm-up (1 step); then 2 steps per decay from t = 2: t = 2, 3; 4, 5; 6.
  const double want[] = {0.01, 0.01, 0.01, 0.005, 0.005, 0.0025};
  std::vector<float> before = p0;
  for (int t = 1; t <= 6; ++t) {
    gpu().replay(*graph);
    cpu().adam_step(cp.get(), cg.get(), cm.get(), cv.get(), n, cstate.get());
    const std::vector<float> after = p.download();
    EXPECT_TRUE(near(before[0] - after[0], want[t - 1], 0, 1e-3)) << "step " << t;
    EXPECT_TRUE(testing::all_near(after, cp.download(), 1e-6, 1e-6)) << "step " << t;
    before = after;
  }
  EXPECT_EQ(state.download()[0].step, 6);
}

Dataset small_dataset() {
  Dataset d;
  d.count = 400;
  d.rows = 28;
  d.cols = 28;
  Pcg32 rng(21, 4);
  for (int64_t i = 0; i < d.count; ++i) {
    const auto label = static_cast<uint8_t>(rng.below(kClasses));
    d.labels.push_back(label);
    for (int64_t px = 0; px < d.pixels(); ++px)
      d.images.push_back(static_cast<uint8_t>(px % 10 == label ? 200 : rng.below(60)));
  }
  return d;
}

struct Intervals : TrainListener {
  std::vector<IntervalStats> seen;
  std::vector<EpochStats> epochs;
  void on_interval(const IntervalStats& s) override { seen.push_back(s); }
  bool on_epoch_end(const EpochStats& s) override {
    epochs.push_back(s);
    return true;
  }
};

Intervals run_trainer(Backend& be, const Dataset& data, bool graph) {
  LrSchedule sched;
  sched.kind = LrScheduleKind::kCosine;
  sched.warmup_steps = 4;
  sched.total_steps = 40;
  Model model(be, {784, 64, 32, kClasses}, 20, AdamHyper{}, false, sched);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, 8));
  TrainerOptions opt;
  opt.epochs = 2;  // 20 steps each
  opt.batch_size = 20;
  opt.use_graph = graph;
  opt.log_interval = 5;
  Trainer trainer(be, model, data, nullptr, opt);
  if (graph) {
    EXPECT_EQ(trainer.graph_fallback(), "");
  }
  Intervals rec;
  trainer.run({&rec});
  return rec;
}

TEST_F(CudaTest, TrainerIntervalsWithAScheduleMatchTheCpu) {
  const Dataset data = small_dataset();
  const Intervals want = run_trainer(cpu(), data, false);
  const Intervals got = run_trainer(gpu(), data, true);
  ASSERT_EQ(want.seen.size(), 8u);
  ASSERT_EQ(got.seen.size(), want.seen.size());
  for (std::size_t i = 0; i < got.seen.size(); ++i) {
    EXPECT_EQ(got.seen[i].epoch, want.seen[i].epoch);
    EXPECT_EQ(got.seen[i].step, want.seen[i].step);
    EXPECT_EQ(got.seen[i].global_step, want.seen[i].global_step);
    EXPECT_EQ(got.seen[i].lr, want.seen[i].lr);
    // 40 steps of training drift apart by float reassociation only.
    EXPECT_TRUE(near(got.seen[i].loss, want.seen[i].loss, 1e-3, 1e-3)) << "interval " << i;
    EXPECT_TRUE(near(got.seen[i].train_accuracy, want.seen[i].train_accuracy, 0.03))
        << "interval " << i;
  }
  ASSERT_EQ(got.epochs.size(), 2u);
  for (std::size_t e = 0; e < 2; ++e) {
    double mean = 0;
    for (std::size_t k = 0; k < 4; ++k) mean += got.seen[4 * e + k].loss / 4;
    EXPECT_TRUE(near(mean, got.epochs[e].loss, 1e-12, 1e-12)) << "epoch " << e + 1;
    EXPECT_EQ(got.epochs[e].lr, want.epochs[e].lr);
  }
}

}  // namespace
}  // namespace mlp
