// The progress bar's layout: at every terminal width it stays inside width - 1
// columns (a line reaching the last column wraps and the redraws stack up), and
// the fields a person needs most survive longest: at 60 columns the epoch's
// ETA and the running loss, at 120 all of them.
#include <gtest/gtest.h>

#include "cli/reporter.h"
#include "testing.h"

namespace mlp::cli {
namespace {

using mlp::testing::contains;

ProgressView busy_view() {
  ProgressView v;
  v.epoch = 10;
  v.epochs = 10;
  v.step = 345;
  v.steps = 600;
  v.epoch_elapsed = 5.2;
  v.epoch_eta = 3.9;
  v.run_elapsed = 75;
  v.run_eta = 4000;  // over an hour: the longest duration format
  v.samples_per_sec = 123456;
  v.has_running = true;
  v.running_loss = 0.12345;
  v.running_accuracy = 0.9612;
  return v;
}

TEST(Progress, NeverReachesTheLastColumn) {
  const ProgressView v = busy_view();
  for (int width = 1; width <= 250; ++width) {
    const std::string line = format_progress(v, width);
    EXPECT_LE(static_cast<int>(line.size()), std::max(width - 1, 0)) << "width " << width;
    EXPECT_EQ(line.find('\n'), std::string::npos);
  }
}

TEST(Progress, SixtyColumnsKeepTheBarTheEtaAndTheRunningLoss) {
  const std::string line = format_progress(busy_view(), 60);
  EXPECT_TRUE(contains(line, "epoch 10/10")) << line;
  EXPECT_TRUE(contains(line, "345/600")) << line;
  EXPECT_TRUE(contains(line, "0:05<0:04")) << line;
  EXPECT_TRUE(contains(line, "loss 0.1235")) << line;
  EXPECT_TRUE(contains(line, "[")) << line;
}

TEST(Progress, OneHundredTwentyColumnsShowEverything) {
  const std::string line = format_progress(busy_view(), 120);
  for (const char* part : {"epoch 10/10", "345/600", "0:05<0:04", "total 1:15<1:06:40",
                           "123456 samples/s", "loss 0.1235", "acc 96.12%", "[#"})
    EXPECT_TRUE(contains(line, part)) << part << " missing: " << line;
}

TEST(Progress, BarFillsWithTheEpoch) {
  ProgressView v = busy_view();
  v.step = v.steps;
  const std::string full = format_progress(v, 120);
  EXPECT_FALSE(contains(full, ".]")) << full;
  v.step = 0;
  v.has_running = false;  // nothing measured yet: no loss field, unknown ETA shown as ?
  v.epoch_eta = -1;
  const std::string empty = format_progress(v, 120);
  EXPECT_TRUE(contains(empty, "[....")) << empty;
  EXPECT_FALSE(contains(empty, "loss")) << empty;
  EXPECT_TRUE(contains(empty, "<?")) << empty;
}

TEST(Progress, DurationsReadLikeAClock) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(7.4), "0:07");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(std::nan("")), "?");
}

TEST(Header, LinesWiderThanTheTerminalBreakAtSpaces) {
  const std::string device =
      "mnist-mlp 0.1.0 | cpu: OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake "
      "MAX_THREADS=64 (core Cooperlake), 2 threads";  // 129 columns, as on a Cooperlake host
  const std::string text = device + "\ndata   data/mnist: 60000 train\n";
  const std::string out = wrap_header(text, 120);
  std::size_t begin = 0, lines = 0;
  while (begin < out.size()) {
    const std::size_t end = out.find('\n', begin);
    EXPECT_LE(end - begin, 119u) << out;
    begin = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 3u) << out;
  EXPECT_TRUE(contains(out, "(core Cooperlake),\n       2 threads\n")) << out;
  EXPECT_EQ(wrap_header("short\nlines\n", 120), "short\nlines\n");
}

}  // namespace
}  // namespace mlp::cli
