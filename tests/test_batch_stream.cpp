// BatchStream: the loader thread (or, Staging::kOnAcquire, acquire() itself)
// must stage exactly the permuted samples, images then labels, batch after
// batch, across epochs, including an epoch restarted before the previous one
// was drained. Driven like the trainer: acquire -> upload_async ->
// release(fence). Every test runs in both staging modes.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "mlp/batch_stream.h"
#include "mlp/rng.h"
#include "testing.h"

namespace mlp {
namespace {

// Every image distinct, so a wrong or repeated sample shows.
Dataset numbered(int64_t count, int64_t rows, int64_t cols) {
  Dataset ds;
  ds.count = count;
  ds.rows = rows;
  ds.cols = cols;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t p = 0; p < rows * cols; ++p)
      ds.images.push_back(static_cast<uint8_t>((i * 31 + p * 7 + i / 8) & 0xFF));
    ds.labels.push_back(static_cast<uint8_t>(i % kClasses));
  }
  return ds;
}

// Checks one staged batch against the dataset; `first` indexes `order`.
::testing::AssertionResult staged_matches(const uint8_t* staged, const Dataset& ds,
                                          const std::vector<uint32_t>& order, int64_t first,
                                          int64_t batch) {
  const int64_t px = ds.pixels();
  for (int64_t i = 0; i < batch; ++i) {
    const uint32_t s = order[first + i];
    if (std::memcmp(staged + i * px, ds.images.data() + int64_t{s} * px,
                    static_cast<std::size_t>(px)) != 0)
      return ::testing::AssertionFailure() << "image " << i << " is not sample " << s;
    if (staged[batch * px + i] != ds.labels[s])
      return ::testing::AssertionFailure() << "label " << i << " is not sample " << s << "'s";
  }
  return ::testing::AssertionSuccess();
}

class BatchStreamStaging : public ::testing::TestWithParam<BatchStream::Staging> {};

TEST_P(BatchStreamStaging, DeliversThePermutedSamplesAcrossEpochs) {
  const Dataset ds = numbered(53, 3, 5);
  auto be = make_cpu_backend(CpuOptions{1});
  constexpr int64_t kBatch = 8;
  BatchStream stream(*be, ds, kBatch, GetParam());
  ASSERT_EQ(stream.slot_bytes(), static_cast<std::size_t>(kBatch * (15 + 1)));
  ASSERT_EQ(stream.batch(), kBatch);
  Buffer dev = be->alloc(stream.slot_bytes());
  const int64_t steps = ds.count / kBatch;  // 6; the last 5 samples are dropped
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto order = epoch_permutation(17, epoch, static_cast<uint32_t>(ds.count));
    stream.start_epoch(order, steps);
    for (int64_t step = 0; step < steps; ++step) {
      const uint8_t* staged = stream.acquire();
      ASSERT_TRUE(staged_matches(staged, ds, order, step * kBatch, kBatch))
          << "epoch " << epoch << " step " << step;
      const uint64_t fence = be->upload_async(dev.data(), staged, stream.slot_bytes(), 0);
      stream.release(fence);
      // What reached backend memory is what was staged.
      ASSERT_TRUE(staged_matches(dev.as<uint8_t>(), ds, order, step * kBatch, kBatch));
    }
    EXPECT_TRUE(
        testing::throws_error([&] { stream.acquire(); }, ExitCode::kFailure, {"exhausted"}));
  }
}

TEST_P(BatchStreamStaging, RestartingAnEpochEarlyDeliversTheNewOrder) {
  // A stopped epoch leaves staged batches behind; the next start_epoch must
  // discard them and stage the new order from its first batch.
  const Dataset ds = numbered(64, 4, 4);
  auto be = make_cpu_backend(CpuOptions{1});
  BatchStream stream(*be, ds, 4, GetParam());
  for (int round = 0; round < 20; ++round) {
    const auto a = epoch_permutation(3, 2 * round, 64);
    const auto b = epoch_permutation(3, 2 * round + 1, 64);
    stream.start_epoch(a, 16);
    for (int step = 0; step < round % 3; ++step) {
      const uint8_t* staged = stream.acquire();
      ASSERT_TRUE(staged_matches(staged, ds, a, step * 4, 4));
      stream.release(0);
    }
    stream.start_epoch(b, 16);
    for (int64_t step = 0; step < 16; ++step) {
      const uint8_t* staged = stream.acquire();
      ASSERT_TRUE(staged_matches(staged, ds, b, step * 4, 4))
          << "round " << round << " step " << step;
      stream.release(0);
    }
  }
}

TEST_P(BatchStreamStaging, AcceptsAnyIndexListAndRejectsAShortOne) {
  const Dataset ds = numbered(10, 2, 2);
  auto be = make_cpu_backend(CpuOptions{1});
  BatchStream stream(*be, ds, 3, GetParam());
  const std::vector<uint32_t> order{9, 9, 0, 4, 4, 4};  // repeats are allowed
  stream.start_epoch(order, 2);
  for (int64_t step = 0; step < 2; ++step) {
    ASSERT_TRUE(staged_matches(stream.acquire(), ds, order, step * 3, 3));
    stream.release(0);
  }
  EXPECT_TRUE(testing::throws_error(
      [&] {
        stream.start_epoch({1, 2, 3, 4, 5}, 2);
      },
      ExitCode::kFailure, {"shorter"}));
}

TEST_P(BatchStreamStaging, DestroysCleanlyMidEpoch) {
  // The destructor must stop a loader blocked on a full ring (and, with no
  // loader, simply let go).
  const Dataset ds = numbered(100, 2, 2);
  auto be = make_cpu_backend(CpuOptions{1});
  for (int i = 0; i < 10; ++i) {
    BatchStream stream(*be, ds, 2, GetParam());
    stream.start_epoch(epoch_permutation(1, i, 100), 50);
    stream.acquire();
  }
  SUCCEED();
}

INSTANTIATE_TEST_SUITE_P(Modes, BatchStreamStaging,
                         ::testing::Values(BatchStream::Staging::kLoaderThread,
                                           BatchStream::Staging::kOnAcquire),
                         [](const ::testing::TestParamInfo<BatchStream::Staging>& p) {
                           return p.param == BatchStream::Staging::kLoaderThread
                                      ? std::string("LoaderThread")
                                      : std::string("OnAcquire");
                         });

}  // namespace
}  // namespace mlp
