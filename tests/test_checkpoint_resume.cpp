// Resume is bit-exact on the CPU backend: training straight through equals
// training, checkpointing (through the serialized bytes), and resuming, in
// every epoch's loss and accuracy and every bit of the parameters and Adam
// moments, both at an epoch boundary and mid-epoch. Also: a non-finite loss
// names the first bad step, checked against an independent step-by-step run.
#include <fmt/format.h>

#include <cstring>
#include <optional>

#include "checkpoint_testing.h"
#include "cli/run_config.h"
#include "cli/train_checkpoint.h"
#include "mlp/trainer.h"

namespace mlp {
namespace {

using cli::checkpoint_position;
using cli::make_checkpoint;

using testing::throws_error;

Dataset tiny_dataset() {
  Dataset d;
  d.count = 250;
  d.rows = 4;
  d.cols = 4;
  Pcg32 rng(42, 1);
  for (int64_t i = 0; i < d.count; ++i) {
    const auto label = static_cast<uint8_t>(rng.below(kClasses));
    d.labels.push_back(label);
    for (int64_t p = 0; p < d.pixels(); ++p)  // a learnable hint plus noise
      d.images.push_back(static_cast<uint8_t>(p == label ? 200 + rng.below(56) : rng.below(90)));
  }
  return d;
}

cli::RunConfig tiny_config(int64_t epochs) {
  cli::RunConfig cfg;
  cfg.epochs = epochs;
  cfg.batch_size = 10;  // 25 steps per epoch
  cfg.hidden = {12};
  cfg.seed = 3;
  return cfg;
}

std::vector<int64_t> sizes_of(const cli::RunConfig& cfg, const Dataset& d) {
  std::vector<int64_t> s{d.pixels()};
  s.insert(s.end(), cfg.hidden.begin(), cfg.hidden.end());
  s.push_back(kClasses);
  return s;
}

// Records epoch ends; asks the trainer to stop after step `stop_step` of epoch `stop_epoch`.
struct Recorder : TrainListener {
  Trainer* trainer = nullptr;
  int64_t stop_epoch = -1, stop_step = -1, epoch = 0;
  std::vector<EpochStats> ends;
  void on_epoch_begin(int64_t e, int64_t) override { epoch = e; }
  void on_step(int64_t s, int64_t) override {
    if (epoch == stop_epoch && s == stop_step) trainer->request_stop();
  }
  bool on_epoch_end(const EpochStats& s) override {
    ends.push_back(s);
    return true;
  }
};

struct Segment {
  std::vector<EpochStats> ends;
  Checkpoint ckpt;  // where it stopped, serialized and parsed back
};

// Trains cfg.epochs from `from` (or from the initial parameters), stopping early if asked.
Segment train(const cli::RunConfig& cfg, const Dataset& data, const std::optional<Checkpoint>& from,
              int64_t stop_epoch = -1, int64_t stop_step = -1) {
  auto be = make_cpu_backend({1});  // one thread: a fixed summation order
  // A resumed model takes the checkpoint's schedule, as `train --resume` does.
  Model model(*be, sizes_of(cfg, data), cfg.batch_size, cfg.adam, cfg.binarize,
              from ? from->schedule : cfg.schedule);
  if (from)
    model.set_state(from->state);
  else
    model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(*be, model, data, nullptr, cli::trainer_options(cfg));
  Recorder rec;
  rec.trainer = &trainer;
  rec.stop_epoch = stop_epoch;
  rec.stop_step = stop_step;
  trainer.run({&rec}, from ? checkpoint_position(*from) : TrainPosition{});
  const std::vector<uint8_t> bytes =
      serialize_checkpoint(make_checkpoint(cfg, model, data, trainer.position()));
  return {rec.ends, parse_checkpoint(bytes.data(), bytes.size(), "memory")};
}

void expect_bit_equal(const ModelState& a, const ModelState& b) {
  EXPECT_EQ(a.step, b.step);
  ASSERT_EQ(a.params.size(), b.params.size());
  EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4));
  EXPECT_EQ(0, std::memcmp(a.m.data(), b.m.data(), a.m.size() * 4));
  EXPECT_EQ(0, std::memcmp(a.v.data(), b.v.data(), a.v.size() * 4));
}

// EXPECT_EQ on doubles: exact, and a NaN never equals anything.
void expect_same_epoch(const EpochStats& a, const EpochStats& b) {
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.train_accuracy, b.train_accuracy);
}

TEST(Resume, AtAnEpochBoundaryIsBitExact) {
  const Dataset data = tiny_dataset();
  const Segment straight = train(tiny_config(2), data, std::nullopt);
  const Segment first = train(tiny_config(1), data, std::nullopt);
  ASSERT_EQ(first.ckpt.epochs_done, 1);
  ASSERT_EQ(first.ckpt.step_in_epoch, 0);
  const Segment second = train(tiny_config(2), data, first.ckpt);
  ASSERT_EQ(straight.ends.size(), 2u);
  ASSERT_EQ(second.ends.size(), 1u);
  expect_same_epoch(straight.ends[0], first.ends[0]);
  expect_same_epoch(straight.ends[1], second.ends[0]);
  expect_bit_equal(straight.ckpt.state, second.ckpt.state);
  EXPECT_TRUE(std::isfinite(straight.ends[1].loss));
  EXPECT_LT(straight.ends[1].loss, straight.ends[0].loss);  // it did train
}

TEST(Resume, MidEpochIsBitExactIncludingThatEpochsMetrics) {
  const Dataset data = tiny_dataset();
  const Segment straight = train(tiny_config(3), data, std::nullopt);
  const Segment stopped = train(tiny_config(3), data, std::nullopt, /*epoch*/ 2, /*step*/ 7);
  ASSERT_EQ(stopped.ends.size(), 1u);  // the cut epoch gets no on_epoch_end
  EXPECT_EQ(stopped.ckpt.epochs_done, 1);
  EXPECT_EQ(stopped.ckpt.step_in_epoch, 7);
  EXPECT_EQ(stopped.ckpt.state.step, 25 + 7);
  EXPECT_GT(stopped.ckpt.epoch_loss_sum, 0.0);
  const Segment rest = train(tiny_config(3), data, stopped.ckpt);
  ASSERT_EQ(straight.ends.size(), 3u);
  ASSERT_EQ(rest.ends.size(), 2u);
  expect_same_epoch(straight.ends[1], rest.ends[0]);
  expect_same_epoch(straight.ends[2], rest.ends[1]);
  expect_bit_equal(straight.ckpt.state, rest.ckpt.state);
}

// Mid-epoch and mid-schedule: warm-up over the first epoch and a half, then a
// cosine to a floor. The checkpoint carries the schedule, the resumed run takes
// it from there (not from its flags), and every bit matches the straight run.
TEST(Resume, MidScheduleIsBitExact) {
  const Dataset data = tiny_dataset();
  cli::ScheduleFlags flags;
  flags.kind = "cosine";
  flags.warmup_steps = 37;
  flags.min_lr = 1e-5f;
  cli::RunConfig cfg = tiny_config(3);
  cfg.schedule = cli::make_schedule(flags, cfg.epochs, 25);
  cfg.log_interval = 5;
  const Segment straight = train(cfg, data, std::nullopt);
  const Segment stopped = train(cfg, data, std::nullopt, /*epoch*/ 2, /*step*/ 16);
  EXPECT_EQ(stopped.ckpt.state.step, 25 + 16);
  EXPECT_EQ(stopped.ckpt.schedule.kind, LrScheduleKind::kCosine);
  EXPECT_EQ(stopped.ckpt.schedule.warmup_steps, 37);
  EXPECT_EQ(stopped.ckpt.schedule.total_steps, 75);
  cli::RunConfig plain = tiny_config(3);  // constant: the checkpoint's schedule must win
  const Segment rest = train(plain, data, stopped.ckpt);
  ASSERT_EQ(straight.ends.size(), 3u);
  ASSERT_EQ(rest.ends.size(), 2u);
  expect_same_epoch(straight.ends[1], rest.ends[0]);
  expect_same_epoch(straight.ends[2], rest.ends[1]);
  EXPECT_EQ(straight.ends[2].lr, rest.ends[1].lr);
  expect_bit_equal(straight.ckpt.state, rest.ckpt.state);
  // ... and the schedule did shape the run: a constant lr ends elsewhere.
  const Segment constant = train(plain, data, std::nullopt);
  EXPECT_NE(constant.ends[2].loss, straight.ends[2].loss);
  EXPECT_GT(straight.ends[0].lr, 0.0);
  EXPECT_LT(straight.ends[2].lr, straight.ends[1].lr);
}

TEST(Resume, AStopBeforeTheFirstStepKeepsThePosition) {
  const Dataset data = tiny_dataset();
  auto be = make_cpu_backend({1});
  const cli::RunConfig cfg = tiny_config(2);
  Model model(*be, sizes_of(cfg, data), cfg.batch_size, cfg.adam, false);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(*be, model, data, nullptr, cli::trainer_options(cfg));
  trainer.request_stop();
  Recorder rec;
  const TrainPosition start{1, 3, 0.5, 2.0};
  EXPECT_TRUE(trainer.run({&rec}, start).empty());
  EXPECT_TRUE(trainer.stopped_early());
  EXPECT_EQ(trainer.position().epoch, 1);
  EXPECT_EQ(trainer.position().step, 3);
  EXPECT_EQ(trainer.position().loss_sum, 0.5);
  EXPECT_EQ(model.state().step, 0);
}

// The first step whose loss is non-finite, found independently: the same
// batches, one eager step at a time, reading the loss after each.
int64_t first_nonfinite_step(const cli::RunConfig& cfg, const Dataset& data) {
  auto be = make_cpu_backend({1});
  Model model(*be, sizes_of(cfg, data), cfg.batch_size, cfg.adam, false);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  const std::vector<uint32_t> perm =
      epoch_permutation(cfg.seed, 0, static_cast<uint32_t>(data.count));
  Buffer images = be->alloc(static_cast<std::size_t>(cfg.batch_size * data.pixels()));
  Buffer labels = be->alloc(static_cast<std::size_t>(cfg.batch_size));
  Buffer metrics = be->alloc(2 * sizeof(double));
  std::vector<uint8_t> hi, hl;
  for (int64_t step = 0; step < data.count / cfg.batch_size; ++step) {
    hi.clear();
    hl.clear();
    for (int64_t i = 0; i < cfg.batch_size; ++i) {
      const uint32_t k = perm[static_cast<std::size_t>(step * cfg.batch_size + i)];
      hi.insert(hi.end(), data.images.begin() + k * data.pixels(),
                data.images.begin() + (k + 1) * data.pixels());
      hl.push_back(data.labels[k]);
    }
    be->upload(images.data(), hi.data(), hi.size());
    be->upload(labels.data(), hl.data(), hl.size());
    model.train_step(images.as<uint8_t>(), labels.as<uint8_t>(), cfg.batch_size,
                     metrics.as<double>());
    double m[2];
    be->download(m, metrics.data(), sizeof(m));
    if (!std::isfinite(m[0])) return step + 1;
  }
  return -1;
}

TEST(NonFinite, AbsurdLearningRateStopsNamingTheEpochAndFirstBadStep) {
  const Dataset data = tiny_dataset();
  cli::RunConfig cfg = tiny_config(2);
  cfg.adam.lr = 1e30f;
  const int64_t bad = first_nonfinite_step(cfg, data);
  ASSERT_GT(bad, 0) << "lr 1e30 should diverge within the first epoch";
  auto be = make_cpu_backend({1});
  Model model(*be, sizes_of(cfg, data), cfg.batch_size, cfg.adam, false);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(*be, model, data, nullptr, cli::trainer_options(cfg));
  Recorder rec;
  EXPECT_TRUE(throws_error([&] { trainer.run({&rec}); }, ExitCode::kNonFinite,
                           {fmt::format("in epoch 1 at step {} of 25", bad), "--lr"}));
  EXPECT_TRUE(rec.ends.empty());  // no epoch end, so no listener ever saved NaN weights
}

}  // namespace
}  // namespace mlp
