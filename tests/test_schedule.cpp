// Learning-rate schedules and --log-interval on the CPU backend: scheduled_lr
// against values worked out by hand, the Adam op moving each parameter by the
// scheduled lr (so it reads the schedule from backend memory, step by step),
// and the trainer's interval events: where they fall, what they hold, and that
// they add up to the epoch's numbers.
#include <gtest/gtest.h>

#include <cmath>

#include "cli/run_config.h"
#include "mlp/backend.h"
#include "mlp/model.h"
#include "mlp/optimizer.h"
#include "mlp/trainer.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::DeviceVec;
using testing::near;

AdamHyper lr_one() {
  AdamHyper h;
  h.lr = 1.0f;
  return h;
}

TEST(LrSchedule, StepWithWarmupMatchesHandValues) {
  LrSchedule s;
  s.kind = LrScheduleKind::kStep;
  s.gamma = 0.5f;
  s.step_size = 3;
  s.warmup_steps = 2;
  // t = 1, 2: warm-up 1/2, 2/2; then 3 steps at 1, 3 at 0.5, 3 at 0.25.
  const double want[] = {0.5, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
  for (int t = 1; t <= 12; ++t)
    EXPECT_EQ(scheduled_lr(lr_one(), s, t), want[t - 1]) << "step " << t;
}

TEST(LrSchedule, CosineAnnealsToTheFloorAndStaysThere) {
  LrSchedule s;
  s.kind = LrScheduleKind::kCosine;
  s.total_steps = 4;
  s.min_lr = 0.0f;
  const double want[] = {1.0, 0.5 * (1 + std::sqrt(0.5)), 0.5, 0.5 * (1 - std::sqrt(0.5)), 0, 0};
  for (int t = 1; t <= 6; ++t)
    EXPECT_TRUE(near(scheduled_lr(lr_one(), s, t), want[t - 1], 1e-15)) << "step " << t;
  s.min_lr = 0.25f;
  EXPECT_TRUE(near(scheduled_lr(lr_one(), s, 3), 0.625, 1e-15));
  EXPECT_EQ(scheduled_lr(lr_one(), s, 99), 0.25);
}

TEST(LrSchedule, ConstantWithWarmupRisesLinearly) {
  LrSchedule s;
  s.warmup_steps = 4;
  AdamHyper h;
  h.lr = 0.002f;
  for (int t = 1; t <= 6; ++t)
    EXPECT_TRUE(
        near(scheduled_lr(h, s, t), static_cast<double>(0.002f) * std::min(t, 4) / 4.0, 1e-12))
        << t;
}

TEST(LrSchedule, CliFlagsBecomeSteps) {
  cli::ScheduleFlags f;
  f.kind = "step";
  f.gamma = 0.7f;
  f.step_epochs = 2;
  f.warmup_steps = 5;
  const LrSchedule s = cli::make_schedule(f, 10, 600);
  EXPECT_EQ(s.kind, LrScheduleKind::kStep);
  EXPECT_EQ(s.step_size, 1200);
  EXPECT_EQ(s.warmup_steps, 5);
  f.kind = "cosine";
  EXPECT_EQ(cli::make_schedule(f, 10, 600).total_steps, 6000);
  f.kind = "linear";
  EXPECT_TRUE(testing::throws_error([&] { cli::make_schedule(f, 10, 600); }, ExitCode::kUsage,
                                    {"--lr-schedule", "linear"}));
}

// With a constant gradient g, m_t / (1 - b1^t) = g and v_t / (1 - b2^t) = g^2,
// so each Adam step moves a parameter by lr(t) * g / (|g| + eps): the scheduled
// lr itself. The op must read the schedule from the state in backend memory.
TEST(LrSchedule, AdamMovesEachParameterByTheScheduledLr) {
  auto be = make_cpu_backend(CpuOptions{1});
  OptimizerState st;
  st.adam.lr = 0.01f;
  st.schedule.kind = LrScheduleKind::kStep;
  st.schedule.gamma = 0.5f;
  st.schedule.step_size = 2;
  st.schedule.warmup_steps = 1;
  const std::size_t n = 5;
  DeviceVec<float> p(*be, std::vector<float>(n, 1.0f)), g(*be, std::vector<float>(n, 1.0f)),
      m(*be, std::vector<float>(n, 0.0f)), v(*be, std::vector<float>(n, 0.0f));
  DeviceVec<OptimizerState> state(*be, std::vector<OptimizerState>{st});
  // t = 1: warm-up (1 step); then 2 steps per decay from t = 2: t = 2, 3; 4, 5; 6.
  const double want[] = {0.01, 0.01, 0.01, 0.005, 0.005, 0.0025};
  float before = 1.0f;
  for (int t = 1; t <= 6; ++t) {
    be->adam_step(p.get(), g.get(), m.get(), v.get(), static_cast<int64_t>(n), state.get());
    const float after = p.download()[0];
    EXPECT_TRUE(near(before - after, want[t - 1], 0, 1e-4)) << "step " << t;
    before = after;
  }
}

Dataset small_dataset() {
  Dataset d;
  d.count = 120;
  d.rows = 3;
  d.cols = 3;
  Pcg32 rng(9, 2);
  for (int64_t i = 0; i < d.count; ++i) {
    const auto label = static_cast<uint8_t>(rng.below(kClasses));
    d.labels.push_back(label);
    for (int64_t px = 0; px < d.pixels(); ++px)
      d.images.push_back(static_cast<uint8_t>(px == label % 9 ? 220 : rng.below(80)));
  }
  return d;
}

struct Events : TrainListener {
  std::vector<IntervalStats> intervals;
  std::vector<EpochStats> epochs;
  void on_interval(const IntervalStats& s) override {
    EXPECT_TRUE(epochs.size() + 1 == static_cast<std::size_t>(s.epoch)) << "before its epoch end";
    intervals.push_back(s);
  }
  bool on_epoch_end(const EpochStats& s) override {
    epochs.push_back(s);
    return true;
  }
};

TEST(LogInterval, EventsFallEveryNStepsAndAddUpToTheEpoch) {
  const Dataset data = small_dataset();
  auto be = make_cpu_backend(CpuOptions{1});
  LrSchedule sched;
  sched.kind = LrScheduleKind::kCosine;
  sched.warmup_steps = 3;
  sched.total_steps = 24;
  Model model(*be, {9, 8, kClasses}, 10, AdamHyper{}, false, sched);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, 4));
  TrainerOptions opt;
  opt.epochs = 2;  // 12 steps each
  opt.batch_size = 10;
  opt.log_interval = 4;
  Trainer trainer(*be, model, data, nullptr, opt);
  Events ev;
  trainer.run({&ev});
  ASSERT_EQ(ev.epochs.size(), 2u);
  ASSERT_EQ(ev.intervals.size(), 6u);
  for (std::size_t i = 0; i < ev.intervals.size(); ++i) {
    const IntervalStats& s = ev.intervals[i];
    EXPECT_EQ(s.epoch, static_cast<int64_t>(i / 3 + 1));
    EXPECT_EQ(s.step, static_cast<int64_t>(i % 3 + 1) * 4);
    EXPECT_EQ(s.global_step, static_cast<int64_t>(i + 1) * 4);
    EXPECT_EQ(s.steps, 4);
    EXPECT_EQ(s.lr, scheduled_lr(AdamHyper{}, sched, s.global_step));
    EXPECT_TRUE(std::isfinite(s.loss) && s.loss > 0) << s.loss;
    EXPECT_TRUE(s.train_accuracy >= 0 && s.train_accuracy <= 1) << s.train_accuracy;
  }
  // Three intervals of 4 steps are the epoch: their mean is the epoch's.
  for (int e = 0; e < 2; ++e) {
    double loss = 0, acc = 0;
    for (int k = 0; k < 3; ++k) {
      loss += ev.intervals[static_cast<std::size_t>(3 * e + k)].loss / 3;
      acc += ev.intervals[static_cast<std::size_t>(3 * e + k)].train_accuracy / 3;
    }
    EXPECT_TRUE(near(loss, ev.epochs[static_cast<std::size_t>(e)].loss, 1e-12, 1e-12));
    EXPECT_TRUE(near(acc, ev.epochs[static_cast<std::size_t>(e)].train_accuracy, 1e-12));
    EXPECT_EQ(ev.epochs[static_cast<std::size_t>(e)].lr,
              scheduled_lr(AdamHyper{}, sched, 12 * (e + 1)));
  }
  EXPECT_LT(ev.epochs[1].lr, ev.epochs[0].lr) << "cosine anneals";
}

TEST(LogInterval, ZeroMeansPerEpochOnlyAndNegativeIsRefused) {
  const Dataset data = small_dataset();
  auto be = make_cpu_backend(CpuOptions{1});
  Model model(*be, {9, 8, kClasses}, 10, AdamHyper{}, false);
  model.set_params(initial_params(model.layout(), InitScheme::kHe, 4));
  TrainerOptions opt;
  opt.epochs = 1;
  opt.batch_size = 10;
  opt.log_interval = 0;
  Events ev;
  Trainer(*be, model, data, nullptr, opt).run({&ev});
  EXPECT_EQ(ev.epochs.size(), 1u);
  EXPECT_TRUE(ev.intervals.empty());
  opt.log_interval = -1;
  EXPECT_TRUE(testing::throws_error([&] { Trainer(*be, model, data, nullptr, opt); },
                                    ExitCode::kUsage, {"--log-interval"}));
}

}  // namespace
}  // namespace mlp
