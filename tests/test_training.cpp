// Training end to end on data built in memory: a separable synthetic problem
// driven to near-zero loss through the Trainer (BatchStream, captured step,
// evaluate), determinism from the seed, and the statistics of initial_params.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "cli/run_config.h"
#include "mlp/model.h"
#include "mlp/trainer.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::near;

// count 4x4 images in up to 8 classes: class c lights the two pixels of column
// c % 4 in rows c / 4 and c / 4 + 2 (a different pair per class), on faint noise.
Dataset synthetic(int64_t count, int classes, uint64_t seed) {
  Dataset ds;
  ds.count = count;
  ds.rows = 4;
  ds.cols = 4;
  Pcg32 rng(seed, 3);
  for (int64_t i = 0; i < count; ++i) {
    const auto label = static_cast<uint8_t>(rng.below(static_cast<uint32_t>(classes)));
    ds.labels.push_back(label);
    for (int64_t p = 0; p < 16; ++p) {
      const bool lit = p % 4 == label % 4 && (p / 4 == label / 4 || p / 4 == label / 4 + 2);
      ds.images.push_back(static_cast<uint8_t>(lit ? 160 + rng.below(96) : rng.below(60)));
    }
  }
  return ds;
}

class Recorder : public TrainListener {
 public:
  std::vector<EpochStats> epochs;
  int64_t steps_seen = 0;
  void on_step(int64_t, int64_t) override { ++steps_seen; }
  bool on_epoch_end(const EpochStats& s) override {
    epochs.push_back(s);
    return true;
  }
};

struct RunResult {
  std::vector<EpochStats> stats;
  ModelState state;
  EvalResult eval;
};

RunResult train(const Dataset& tr, const Dataset& te, cli::RunConfig cfg, int threads,
                const std::vector<int64_t>& hidden = {32}) {
  auto be = make_cpu_backend(CpuOptions{threads});
  std::vector<int64_t> sizes{tr.pixels()};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(8);
  Model model(*be, sizes, cfg.batch_size, cfg.adam, cfg.binarize);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(*be, model, tr, &te, cli::trainer_options(cfg));
  Recorder rec;
  RunResult r;
  r.stats = trainer.run({&rec});
  EXPECT_EQ(rec.epochs.size(), r.stats.size());
  EXPECT_EQ(rec.steps_seen, trainer.steps_per_epoch() * cfg.epochs);
  r.state = model.state();
  DeviceDataset dev(*be, te);
  r.eval = evaluate(*be, model, dev);
  return r;
}

TEST(Training, SyntheticProblemReachesNearZeroLoss) {
  const Dataset tr = synthetic(400, 8, 1), te = synthetic(200, 8, 2);
  cli::RunConfig cfg;
  cfg.epochs = 20;
  cfg.batch_size = 25;  // 16 steps per epoch, 320 Adam steps in all
  cfg.adam.lr = 1e-2f;
  const RunResult r = train(tr, te, cfg, 2);
  ASSERT_EQ(r.stats.size(), 20u);
  const EpochStats& first = r.stats.front();
  const EpochStats& last = r.stats.back();
  EXPECT_EQ(last.steps, 16);
  ASSERT_TRUE(std::isfinite(first.loss) && std::isfinite(last.loss));
  EXPECT_TRUE(first.loss > 0.5) << "the problem should not start solved: " << first.loss;
  EXPECT_TRUE(last.loss < 0.05) << "final training loss " << last.loss;
  std::printf("[ info     ] synthetic: loss %.4f after epoch 1, %.5f after epoch %lld\n",
              first.loss, last.loss, static_cast<long long>(last.epoch));
  EXPECT_TRUE(last.train_accuracy >= 0.99) << last.train_accuracy;
  EXPECT_TRUE(last.test_accuracy >= 0.99) << last.test_accuracy;
  EXPECT_TRUE(last.test_loss < 0.1) << last.test_loss;
  EXPECT_TRUE(last.seconds > 0 && last.samples_per_sec > 0);
  // evaluate() after training agrees with the last epoch's test numbers.
  EXPECT_TRUE(near(r.eval.accuracy, last.test_accuracy, 1e-12));
  EXPECT_TRUE(near(r.eval.loss, last.test_loss, 1e-9, 1e-9));
  int64_t total = 0, diagonal = 0;
  for (int t = 0; t < kClasses; ++t)
    for (int p = 0; p < kClasses; ++p) {
      total += r.eval.confusion[t][p];
      if (t == p) diagonal += r.eval.confusion[t][p];
    }
  EXPECT_EQ(total, te.count);
  EXPECT_TRUE(
      near(static_cast<double>(diagonal) / static_cast<double>(te.count), r.eval.accuracy, 1e-12));
}

TEST(Training, SameSeedGivesIdenticalRuns) {
  const Dataset tr = synthetic(120, 8, 3), te = synthetic(40, 8, 4);
  cli::RunConfig cfg;
  cfg.epochs = 3;
  cfg.batch_size = 16;  // 120 / 16: 7 steps, the remainder dropped
  cfg.seed = 42;
  const RunResult a = train(tr, te, cfg, 1, {16, 8});
  const RunResult b = train(tr, te, cfg, 1, {16, 8});
  ASSERT_EQ(a.stats.size(), 3u);
  ASSERT_EQ(b.stats.size(), 3u);
  for (std::size_t e = 0; e < a.stats.size(); ++e) {
    ASSERT_TRUE(std::isfinite(a.stats[e].loss));
    EXPECT_EQ(a.stats[e].loss, b.stats[e].loss) << "epoch " << e + 1;
    EXPECT_EQ(a.stats[e].test_loss, b.stats[e].test_loss) << "epoch " << e + 1;
    EXPECT_EQ(a.stats[e].steps, 7);
  }
  EXPECT_EQ(a.state.params, b.state.params);
  EXPECT_EQ(a.state.step, 21);
  // The captured step and the eager step are the same computation.
  cfg.use_graph = false;
  const RunResult eager = train(tr, te, cfg, 1, {16, 8});
  EXPECT_EQ(eager.state.params, a.state.params);
  // And the seed matters (init and shuffle), so the equalities above mean something.
  cfg.seed = 43;
  const RunResult other = train(tr, te, cfg, 1, {16, 8});
  EXPECT_NE(other.stats.back().loss, a.stats.back().loss);
}

TEST(Training, TrainerEqualsAPlainLoopOverEpochPermutations) {
  // The Trainer's definition, written out: epoch e visits epoch_permutation(seed, e)
  // in batches, remainder dropped, one train_step each. Bit-equal on one thread,
  // so a wrong order, a lost batch or a mislabeled sample all show.
  const Dataset tr = synthetic(50, 8, 8), te = synthetic(10, 8, 9);
  cli::RunConfig cfg;
  cfg.epochs = 3;
  cfg.batch_size = 8;  // 6 steps, 2 samples dropped per epoch
  cfg.seed = 77;
  const std::vector<int64_t> sizes{16, 12, 8};
  const RunResult trained = train(tr, te, cfg, 1, {12});

  auto be = make_cpu_backend(CpuOptions{1});
  Model model(*be, sizes, cfg.batch_size, cfg.adam, false);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Buffer images = be->alloc(static_cast<std::size_t>(cfg.batch_size * 16));
  Buffer labels = be->alloc(static_cast<std::size_t>(cfg.batch_size));
  for (int64_t e = 0; e < cfg.epochs; ++e) {
    const auto order = epoch_permutation(cfg.seed, e, static_cast<uint32_t>(tr.count));
    testing::DeviceVec<double> metrics(*be, std::vector<double>{0.0, 0.0});
    for (int64_t step = 0; step < tr.count / cfg.batch_size; ++step) {
      std::vector<uint8_t> im, lb;
      for (int64_t i = 0; i < cfg.batch_size; ++i) {
        const uint32_t s = order[step * cfg.batch_size + i];
        im.insert(im.end(), tr.images.begin() + s * 16, tr.images.begin() + (s + 1) * 16);
        lb.push_back(tr.labels[s]);
      }
      be->upload(images.data(), im.data(), im.size());
      be->upload(labels.data(), lb.data(), lb.size());
      model.train_step(images.as<uint8_t>(), labels.as<uint8_t>(), cfg.batch_size, metrics.get());
    }
    const double loss = metrics.download()[kMetricLossSum] / 48.0;
    EXPECT_EQ(trained.stats[static_cast<std::size_t>(e)].loss, loss) << "epoch " << e + 1;
  }
  const ModelState mine = model.state();
  EXPECT_EQ(mine.step, 18);
  EXPECT_EQ(trained.state.step, mine.step);
  EXPECT_EQ(trained.state.params, mine.params);
}

TEST(Training, NonFiniteLossStopsWithExitCode5) {
  // Three ways to a NaN loss: a poisoned output bias, a poisoned hidden bias
  // (the ReLU must pass NaN on, not clamp it to 0 and train on with a NaN
  // weight), and a learning rate so large the logits overflow.
  const Dataset tr = synthetic(60, 8, 5), te = synthetic(20, 8, 6);
  for (const int poison_layer : {1, 0, -1}) {
    const bool poison = poison_layer >= 0;
    SCOPED_TRACE(poison_layer == 1 ? "NaN output bias" : poison ? "NaN hidden bias" : "lr 1e30");
    auto be = make_cpu_backend(CpuOptions{1});
    cli::RunConfig cfg;
    cfg.epochs = 3;
    cfg.batch_size = 10;
    if (!poison) cfg.adam.lr = 1e30f;
    Model model(*be, {16, 8, 8}, cfg.batch_size, cfg.adam, false);
    auto p = initial_params(model.layout(), InitScheme::kHe, 1);
    if (poison) p[model.layout().bias_offset(poison_layer) + 3] = std::nanf("");
    model.set_params(p);
    Trainer trainer(*be, model, tr, &te, cli::trainer_options(cfg));
    Recorder rec;
    EXPECT_TRUE(testing::throws_error([&] { trainer.run({&rec}); }, ExitCode::kNonFinite,
                                      {"loss", "epoch 1"}));
    EXPECT_TRUE(rec.epochs.empty()) << "no epoch with a non-finite loss is reported as done";
  }
}

TEST(Training, BatchLargerThanTrainingSetIsAUsageError) {
  const Dataset tr = synthetic(30, 8, 7);
  auto be = make_cpu_backend(CpuOptions{1});
  cli::RunConfig cfg;
  cfg.batch_size = 31;
  Model model(*be, {16, 8}, cfg.batch_size, cfg.adam, false);
  EXPECT_TRUE(
      testing::throws_error([&] { Trainer t(*be, model, tr, nullptr, cli::trainer_options(cfg)); },
                            ExitCode::kUsage, {"--batch-size", "31", "30"}));
}

// ---- initial parameters ----------------------------------------------------------------

double mean(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s / static_cast<double>(n);
}
double stddev(const float* x, int64_t n) {
  const double m = mean(x, n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (x[i] - m) * (x[i] - m);
  return std::sqrt(s / static_cast<double>(n));
}

TEST(InitialParams, HeAndNormalHaveTheirDocumentedStatistics) {
  const ParamLayout lay({300, 200, 10});
  const auto he = initial_params(lay, InitScheme::kHe, 1);
  const auto normal = initial_params(lay, InitScheme::kNormal, 1);
  ASSERT_EQ(he.size(), static_cast<std::size_t>(lay.total_floats()));
  for (int64_t l = 0; l < lay.layers(); ++l) {
    const int64_t nw = lay.fan_in(l) * lay.fan_out(l);
    const double n = static_cast<double>(nw);
    const double want_he = std::sqrt(2.0 / static_cast<double>(lay.fan_in(l)));
    // sample std of n normals: relative standard error ~ 1/sqrt(2n); allow 5 of them
    EXPECT_TRUE(
        near(stddev(he.data() + lay.weight_offset(l), nw), want_he, 0, 5 / std::sqrt(2 * n)))
        << "he layer " << l;
    EXPECT_TRUE(near(mean(he.data() + lay.weight_offset(l), nw), 0.0, 5 * want_he / std::sqrt(n)));
    EXPECT_TRUE(
        near(stddev(normal.data() + lay.weight_offset(l), nw), 1.0, 0, 5 / std::sqrt(2 * n)))
        << "normal layer " << l;
    for (int64_t j = 0; j < lay.fan_out(l); ++j)
      EXPECT_EQ(he[lay.bias_offset(l) + j], 0.0f) << "he biases start at zero";
    EXPECT_TRUE(near(stddev(normal.data() + lay.bias_offset(l), lay.fan_out(l)), 1.0, 0,
                     5 / std::sqrt(2.0 * static_cast<double>(lay.fan_out(l)))))
        << "normal biases are N(0, 1)";
  }
  // Same seed, same numbers; another seed, others.
  EXPECT_EQ(initial_params(lay, InitScheme::kHe, 1), he);
  EXPECT_NE(initial_params(lay, InitScheme::kHe, 2), he);
}

TEST(InitialParams, LayoutIsAlignedAndPaddingStaysZero) {
  const ParamLayout lay({7, 5, 3});
  EXPECT_EQ(lay.parameter_count(), 7 * 5 + 5 + 5 * 3 + 3);
  for (int64_t l = 0; l < lay.layers(); ++l) {
    EXPECT_EQ(lay.weight_offset(l) % 16, 0) << "64-byte aligned";
    EXPECT_EQ(lay.bias_offset(l) % 16, 0) << "64-byte aligned";
    EXPECT_GE(lay.bias_offset(l), lay.weight_offset(l) + lay.fan_in(l) * lay.fan_out(l));
  }
  const auto p = initial_params(lay, InitScheme::kNormal, 3);
  std::vector<bool> used(p.size(), false);
  for (int64_t l = 0; l < lay.layers(); ++l) {
    for (int64_t i = 0; i < lay.fan_in(l) * lay.fan_out(l); ++i)
      used[lay.weight_offset(l) + i] = true;
    for (int64_t j = 0; j < lay.fan_out(l); ++j) used[lay.bias_offset(l) + j] = true;
  }
  for (std::size_t i = 0; i < p.size(); ++i)
    if (!used[i]) {
      EXPECT_EQ(p[i], 0.0f) << "padding float " << i;
    }
  EXPECT_EQ(ParamLayout({784, 500, 500, 500, 10}).parameter_count(),
            784 * 500 + 500 + 2 * (500 * 500 + 500) + 500 * 10 + 10);
}

// The flat arrays start on cache lines, and not at the same offset in a 4 KiB
// page (Model's constructor: 4K aliasing slowed the CPU's Adam loop).
TEST(InitialParams, ModelArraysStartOnCacheLinesAtDifferentPageOffsets) {
  auto be = make_cpu_backend(CpuOptions{1});
  const Model model(*be, {784, 500, 500, 500, 10}, 100, AdamHyper{}, false);
  const auto at = [](const float* p) { return reinterpret_cast<uintptr_t>(p); };
  EXPECT_EQ(at(model.params()) % 64, 0u);
  EXPECT_EQ(at(model.grads()) % 64, 0u);
  EXPECT_NE(at(model.params()) % 4096, at(model.grads()) % 4096);
  for (int64_t l = 0; l < model.layout().layers(); ++l)
    EXPECT_EQ(at(model.params() + model.layout().weight_offset(l)) % 64, 0u) << "layer " << l;
}

TEST(InitialParams, ParseInitAcceptsOnlyKnownSchemes) {
  EXPECT_EQ(parse_init("he"), InitScheme::kHe);
  EXPECT_EQ(parse_init("normal"), InitScheme::kNormal);
  EXPECT_TRUE(testing::throws_error([] { parse_init("xavier"); }, ExitCode::kUsage, {"xavier"}));
}

}  // namespace
}  // namespace mlp
