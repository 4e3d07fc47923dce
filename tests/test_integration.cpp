// Integration on the real MNIST files ($MNIST_DIR, else data/mnist in the
// source tree; skipped with a reason when absent): DATA.md's sanity facts,
// and one epoch of the default network on the CPU reaching >= 96% test
// accuracy. Fashion-MNIST (data/fashion, gzipped) checks the .gz path on
// real files when it is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli/run_config.h"
#include "mlp/dataset.h"
#include "mlp/model.h"
#include "mlp/trainer.h"
#include "testing.h"

namespace mlp {
namespace {

#define SKIP_WITHOUT_MNIST(dir)                                                            \
  if (!testing::split_files_present(dir))                                                  \
  GTEST_SKIP() << "real MNIST not found in " << (dir)                                      \
               << " (run tools/fetch-data, or set MNIST_DIR to a directory with the four " \
                  "IDX files)"

TEST(RealMnist, MatchesDataMdSanityFacts) {
  const std::string dir = testing::mnist_dir();
  SKIP_WITHOUT_MNIST(dir);
  const Dataset train = load_split(dir, Split::kTrain);
  const Dataset test = load_split(dir, Split::kTest);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  const std::vector<uint8_t> first_train{5, 0, 4, 1, 9, 2, 1, 3, 1, 4};
  const std::vector<uint8_t> first_test{7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
  EXPECT_EQ(std::vector<uint8_t>(train.labels.begin(), train.labels.begin() + 10), first_train);
  EXPECT_EQ(std::vector<uint8_t>(test.labels.begin(), test.labels.begin() + 10), first_test);
  EXPECT_EQ(std::count(train.labels.begin(), train.labels.end(), 0), 5923);
  EXPECT_EQ(std::count(train.labels.begin(), train.labels.end(), 1), 6742);
}

TEST(RealFashionMnist, LoadsFromGzip) {
  const std::string dir = std::string(MLP_SOURCE_DIR) + "/data/fashion";
  if (!testing::split_files_present(dir))
    GTEST_SKIP() << "Fashion-MNIST not found in " << dir
                 << " (apt-get install dataset-fashion-mnist, then tools/fetch-data)";
  const Dataset train = load_split(dir, Split::kTrain);
  const Dataset test = load_split(dir, Split::kTest);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  // Ten balanced clothing classes: 6000 training images each.
  for (int c = 0; c < kClasses; ++c)
    EXPECT_EQ(std::count(train.labels.begin(), train.labels.end(), c), 6000) << "class " << c;
}

TEST(RealMnist, OneEpochOfTheDefaultNetworkReaches96Percent) {
  const std::string dir = testing::mnist_dir();
  SKIP_WITHOUT_MNIST(dir);
  const Dataset train = load_split(dir, Split::kTrain);
  const Dataset test = load_split(dir, Split::kTest);
  cli::RunConfig cfg;  // the defaults: 784-500-500-500-10, he init, Adam 1e-3, batch 100
  cfg.data_dir = dir;
  cfg.epochs = 1;
  auto be = make_cpu_backend(CpuOptions{0});
  std::vector<int64_t> sizes{train.pixels()};
  sizes.insert(sizes.end(), cfg.hidden.begin(), cfg.hidden.end());
  sizes.push_back(kClasses);
  Model model(*be, sizes, cfg.batch_size, cfg.adam, cfg.binarize);
  model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  Trainer trainer(*be, model, train, &test, cli::trainer_options(cfg));
  TrainListener quiet;
  const auto stats = trainer.run({&quiet});
  ASSERT_EQ(stats.size(), 1u);
  const EpochStats& s = stats[0];
  EXPECT_EQ(s.steps, 600);
  ASSERT_TRUE(std::isfinite(s.loss)) << s.loss;
  EXPECT_TRUE(s.loss < 0.5) << "mean training loss " << s.loss;
  EXPECT_TRUE(s.test_accuracy >= 0.96) << "test accuracy " << s.test_accuracy;
  std::printf(
      "[ info     ] 1 epoch: loss %.4f, train %.2f%%, test %.2f%%, %.1f s, %.0f samples/s (%s)\n",
      s.loss, 100 * s.train_accuracy, 100 * s.test_accuracy, s.seconds, s.samples_per_sec,
      be->describe().c_str());
}

}  // namespace
}  // namespace mlp
