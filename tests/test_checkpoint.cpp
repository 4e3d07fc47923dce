// Checkpoint format: round trips, the documented little-endian layout, every
// corrupt case (each refused with Error(kCheckpoint) and a message saying
// which check failed), and atomic saves that leave the old file intact.
#include <fmt/format.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstring>

#include "checkpoint_testing.h"
#include "mlp/file_io.h"

namespace mlp {
namespace {

using testing::random_checkpoint;
using testing::read_bytes;
using testing::TempDir;
using testing::throws_error;

// Odd sizes, so the flat layout has alignment padding between tensors.
Checkpoint small_checkpoint(uint64_t seed = 7) {
  return random_checkpoint({6, 5, 3, 10}, 2, 3, seed);
}

uint32_t le32(const std::vector<uint8_t>& b, std::size_t at) {
  return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
         uint32_t{b[at + 3]} << 24;
}
uint64_t le64(const std::vector<uint8_t>& b, std::size_t at) {
  return uint64_t{le32(b, at)} | uint64_t{le32(b, at + 4)} << 32;
}
void put_le32(std::vector<uint8_t>& b, std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_le64(std::vector<uint8_t>& b, std::size_t at, uint64_t v) {
  put_le32(b, at, static_cast<uint32_t>(v));
  put_le32(b, at + 4, static_cast<uint32_t>(v >> 32));
}

// Recomputes both CRCs with zlib, so a test can craft a well-formed file with a bad field.
void fix_crcs(std::vector<uint8_t>& b) {
  put_le32(b, 24,
           static_cast<uint32_t>(crc32(0L, b.data() + 32, static_cast<uInt>(b.size() - 32))));
  put_le32(b, 28, static_cast<uint32_t>(crc32(0L, b.data(), 28)));
}

Checkpoint parse(const std::vector<uint8_t>& b) {
  return parse_checkpoint(b.data(), b.size(), "ck.bin");
}

void expect_same(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.sizes, b.sizes);
  EXPECT_EQ(a.image_rows, b.image_rows);
  EXPECT_EQ(a.image_cols, b.image_cols);
  EXPECT_EQ(a.batch_size, b.batch_size);
  EXPECT_EQ(a.adam.lr, b.adam.lr);
  EXPECT_EQ(a.adam.beta1, b.adam.beta1);
  EXPECT_EQ(a.adam.beta2, b.adam.beta2);
  EXPECT_EQ(a.adam.eps, b.adam.eps);
  EXPECT_EQ(a.schedule.kind, b.schedule.kind);
  EXPECT_EQ(a.schedule.gamma, b.schedule.gamma);
  EXPECT_EQ(a.schedule.step_size, b.schedule.step_size);
  EXPECT_EQ(a.schedule.warmup_steps, b.schedule.warmup_steps);
  EXPECT_EQ(a.schedule.total_steps, b.schedule.total_steps);
  EXPECT_EQ(a.schedule.min_lr, b.schedule.min_lr);
  EXPECT_EQ(a.init, b.init);
  EXPECT_EQ(a.binarize, b.binarize);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.epochs, b.epochs);
  EXPECT_EQ(a.train_count, b.train_count);
  EXPECT_EQ(a.train_labels_crc, b.train_labels_crc);
  EXPECT_EQ(a.epochs_done, b.epochs_done);
  EXPECT_EQ(a.step_in_epoch, b.step_in_epoch);
  EXPECT_EQ(a.epoch_loss_sum, b.epoch_loss_sum);
  EXPECT_EQ(a.epoch_correct, b.epoch_correct);
  EXPECT_EQ(a.state.step, b.state.step);
  // Bitwise: memcmp, so even -0.0 vs 0.0 or a NaN payload would differ.
  ASSERT_EQ(a.state.params.size(), b.state.params.size());
  EXPECT_EQ(0,
            std::memcmp(a.state.params.data(), b.state.params.data(), a.state.params.size() * 4));
  EXPECT_EQ(0, std::memcmp(a.state.m.data(), b.state.m.data(), a.state.m.size() * 4));
  EXPECT_EQ(0, std::memcmp(a.state.v.data(), b.state.v.data(), a.state.v.size() * 4));
}

TEST(Checkpoint, RoundTripsEveryFieldBitExactly) {
  Checkpoint c = small_checkpoint();
  c.adam = {3e-4f, 0.8f, 0.99f, 1e-7f};
  c.schedule.kind = LrScheduleKind::kCosine;
  c.schedule.warmup_steps = 3;
  c.schedule.total_steps = 30;
  c.schedule.min_lr = 1e-5f;
  c.init = InitScheme::kNormal;
  c.binarize = true;
  c.seed = 0xfedcba9876543210ULL;
  c.state.params[0] = -0.0f;
  c.state.params[1] = std::numeric_limits<float>::denorm_min();
  expect_same(c, parse(serialize_checkpoint(c)));
}

TEST(Checkpoint, SaveAndLoadThroughAFile) {
  TempDir dir;
  const Checkpoint c = small_checkpoint();
  save_checkpoint(dir.file("a.ckpt"), c);
  expect_same(c, load_checkpoint(dir.file("a.ckpt")));
}

TEST(Checkpoint, HeaderIsTheDocumentedLittleEndianLayout) {
  const Checkpoint c = small_checkpoint();
  const std::vector<uint8_t> b = serialize_checkpoint(c);
  ASSERT_GE(b.size(), 64u);
  EXPECT_EQ(0, std::memcmp(b.data(), "MLPCKPT\0", 8));
  EXPECT_EQ(le32(b, 8), 2u);    // version
  EXPECT_EQ(le32(b, 12), 32u);  // header size
  EXPECT_EQ(le64(b, 16), b.size() - 32);
  EXPECT_EQ(le32(b, 24),
            static_cast<uint32_t>(crc32(0L, b.data() + 32, static_cast<uInt>(b.size() - 32))));
  EXPECT_EQ(le32(b, 28), static_cast<uint32_t>(crc32(0L, b.data(), 28)));
  // Payload starts with the layer count and the sizes as i64.
  EXPECT_EQ(le32(b, 32), 4u);
  EXPECT_EQ(le64(b, 36), 6u);
  EXPECT_EQ(le64(b, 36 + 3 * 8), 10u);
  // ... and ends with params, m, v: 3 blocks of parameter_count f32, no padding.
  const int64_t params = ParamLayout(c.sizes).parameter_count();
  const std::size_t tensors = b.size() - static_cast<std::size_t>(params) * 12;
  float w0;
  const uint32_t bits = le32(b, tensors);
  std::memcpy(&w0, &bits, 4);
  EXPECT_EQ(w0, c.state.params[0]);
  EXPECT_EQ(le64(b, tensors - 8), static_cast<uint64_t>(params));        // tensor size field
  EXPECT_EQ(static_cast<int64_t>(le64(b, tensors - 16)), c.state.step);  // Adam step
}

TEST(Checkpoint, RefusesEmptyAndBadMagic) {
  EXPECT_TRUE(throws_error([] { parse({}); }, ExitCode::kCheckpoint, {"ck.bin", "bad magic"}));
  std::vector<uint8_t> b = serialize_checkpoint(small_checkpoint());
  b[0] = 'X';
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"ck.bin", "bad magic"}));
  const std::string html = "<html><body>404</body></html>";
  EXPECT_TRUE(throws_error([&] { parse(std::vector<uint8_t>(html.begin(), html.end())); },
                           ExitCode::kCheckpoint, {"bad magic", "HTML"}));
}

TEST(Checkpoint, RefusesTruncatedHeaderAndPayload) {
  const std::vector<uint8_t> b = serialize_checkpoint(small_checkpoint());
  const std::vector<uint8_t> header(b.begin(), b.begin() + 20);
  EXPECT_TRUE(throws_error([&] { parse(header); }, ExitCode::kCheckpoint,
                           {"ck.bin", "truncated", "header"}));
  const std::vector<uint8_t> cut(b.begin(), b.end() - 1);
  EXPECT_TRUE(
      throws_error([&] { parse(cut); }, ExitCode::kCheckpoint, {"ck.bin", "truncated", "payload"}));
}

TEST(Checkpoint, EveryPrefixIsRefusedAsTruncated) {
  const std::vector<uint8_t> b = serialize_checkpoint(small_checkpoint());
  for (std::size_t n = 8; n < b.size(); ++n) {
    const std::vector<uint8_t> cut(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
    ASSERT_TRUE(throws_error([&] { parse(cut); }, ExitCode::kCheckpoint, {"truncated"}))
        << "prefix of " << n << " bytes";
  }
}

TEST(Checkpoint, RefusesTrailingBytes) {
  std::vector<uint8_t> b = serialize_checkpoint(small_checkpoint());
  b.push_back(0);
  EXPECT_TRUE(
      throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"ck.bin", "1 trailing bytes"}));
}

TEST(Checkpoint, RefusesOtherVersions) {
  std::vector<uint8_t> b = serialize_checkpoint(small_checkpoint());
  for (uint32_t v : {0u, 3u}) {
    put_le32(b, 8, v);
    fix_crcs(b);
    EXPECT_TRUE(throws_error(
        [&] { parse(b); }, ExitCode::kCheckpoint,
        {"ck.bin", fmt::format("version {} is not supported", v), "reads versions 1..2"}));
  }
}

// The version 1 bytes of `c`: version 2 without the 36-byte schedule block that
// follows Adam's eps (payload offset 44 + 8n).
std::vector<uint8_t> version1_bytes(const Checkpoint& c) {
  std::vector<uint8_t> b = serialize_checkpoint(c);
  const std::size_t at = 32 + 44 + 8 * c.sizes.size();
  b.erase(b.begin() + static_cast<std::ptrdiff_t>(at),
          b.begin() + static_cast<std::ptrdiff_t>(at + 36));
  put_le32(b, 8, 1);
  put_le64(b, 16, b.size() - 32);
  fix_crcs(b);
  return b;
}

TEST(Checkpoint, ReadsVersion1WithAConstantSchedule) {
  Checkpoint c = small_checkpoint();
  const Checkpoint v1 = parse(version1_bytes(c));
  EXPECT_EQ(v1.schedule.kind, LrScheduleKind::kConstant);
  expect_same(c, v1);  // every other field as written
}

TEST(Checkpoint, ScheduleBlockFollowsAdamsEps) {
  Checkpoint c = small_checkpoint();
  c.schedule.kind = LrScheduleKind::kStep;
  c.schedule.gamma = 0.5f;
  c.schedule.step_size = 7;
  c.schedule.warmup_steps = 2;
  const std::vector<uint8_t> b = serialize_checkpoint(c);
  const std::size_t at = 32 + 44 + 8 * c.sizes.size();
  EXPECT_EQ(le32(b, at), 1u);  // kind: step
  float gamma;
  const uint32_t bits = le32(b, at + 4);
  std::memcpy(&gamma, &bits, 4);
  EXPECT_EQ(gamma, 0.5f);
  EXPECT_EQ(le64(b, at + 8), 7u);
  EXPECT_EQ(le64(b, at + 16), 2u);
  EXPECT_EQ(le64(b, at + 24), 0u);
}

TEST(Checkpoint, RefusesAnUnknownOrInvalidSchedule) {
  Checkpoint c = small_checkpoint();
  std::vector<uint8_t> b = serialize_checkpoint(c);
  const std::size_t at = 32 + 44 + 8 * c.sizes.size();
  put_le32(b, at, 9);
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint,
                           {"ck.bin", "invalid", "lr schedule 9 is unknown"}));
  c.schedule.kind = LrScheduleKind::kStep;
  c.schedule.step_size = 1;
  b = serialize_checkpoint(c);
  put_le64(b, at + 8, 0);  // step size 0
  fix_crcs(b);
  EXPECT_TRUE(
      throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"ck.bin", "invalid", "--lr-step"}));
}

TEST(Checkpoint, RefusesCorruptHeaderAndPayload) {
  const std::vector<uint8_t> good = serialize_checkpoint(small_checkpoint());
  std::vector<uint8_t> b = good;
  b[16] ^= 0x01;  // payload size, header CRC not updated
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint,
                           {"ck.bin", "corrupt", "header CRC32 mismatch"}));
  b = good;
  b[b.size() - 5] ^= 0x10;  // one bit of the second moment
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint,
                           {"ck.bin", "corrupt", "payload CRC32 mismatch"}));
}

TEST(Checkpoint, EverySingleByteFlipIsRefused) {
  const std::vector<uint8_t> good = serialize_checkpoint(small_checkpoint());
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> b = good;
    b[i] ^= 0xA5;
    try {
      parse(b);
      ADD_FAILURE() << "flipping byte " << i << " was accepted";
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ExitCode::kCheckpoint) << e.what();
    }
  }
}

// Well-formed files (CRCs correct) whose fields are invalid: the loader checks
// meaning too, since a buggy writer or a hand-made file can have a valid CRC.
TEST(Checkpoint, RefusesInvalidFieldsBehindAValidCrc) {
  const std::vector<uint8_t> good = serialize_checkpoint(small_checkpoint());
  std::vector<uint8_t> b = good;
  put_le32(b, 32, 99);  // layer count
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint,
                           {"ck.bin", "invalid", "layer count = 99"}));

  b = good;
  put_le64(b, 36 + 8, 7);  // first hidden size: the tensors no longer match
  fix_crcs(b);
  EXPECT_TRUE(
      throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"ck.bin", "invalid", "tensor size"}));

  b = good;
  put_le64(b, 36 + 8, int64_t{1} << 40);  // absurd size: refused before any allocation
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"layer size"}));

  const int64_t params = ParamLayout(small_checkpoint().sizes).parameter_count();
  const std::size_t tensors = good.size() - static_cast<std::size_t>(params) * 12;
  b = good;
  put_le64(b, tensors - 16, 999);  // Adam step disagrees with epoch 1 step 4
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"Adam step 999"}));

  b = good;
  put_le32(b, tensors + 8, 0x7fc00000);  // NaN in layers.0.weight
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint,
                           {"parameters of layers.0.weight", "nan", "index 2"}));

  b = good;
  put_le32(b, b.size() - 4, 0xbf800000);  // -1 in the second moment
  fix_crcs(b);
  EXPECT_TRUE(throws_error([&] { parse(b); }, ExitCode::kCheckpoint, {"Adam second moment"}));
}

TEST(Checkpoint, NamesTheFileWhenMissingOrADirectory) {
  TempDir dir;
  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir.file("none.ckpt")); }, ExitCode::kCheckpoint,
                           {"none.ckpt", "no such file"}));
  EXPECT_TRUE(throws_error([&] { load_checkpoint(dir.path()); }, ExitCode::kCheckpoint,
                           {"is a directory"}));
}

// ---- atomic saves ------------------------------------------------------------------

TEST(CheckpointSave, ReplacesTheOldFileAndLeavesNoTemporaries) {
  TempDir dir;
  const std::string p = dir.file("a.ckpt");
  save_checkpoint(p, small_checkpoint(1));
  save_checkpoint(p, small_checkpoint(2));
  expect_same(small_checkpoint(2), load_checkpoint(p));
  EXPECT_EQ(testing::count_files_containing(dir.path(), ".tmp"), 0);
  EXPECT_EQ(testing::count_files_containing(dir.path(), ".probe"), 0);
}

TEST(CheckpointSave, NonFiniteStateIsNeverWritten) {
  TempDir dir;
  const std::string p = dir.file("a.ckpt");
  save_checkpoint(p, small_checkpoint(1));
  const std::vector<uint8_t> before = read_bytes(p);
  Checkpoint bad = small_checkpoint(2);
  bad.state.params[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(throws_error([&] { save_checkpoint(p, bad); }, ExitCode::kNonFinite,
                           {"a.ckpt", "non-finite", "unchanged"}));
  EXPECT_EQ(read_bytes(p), before);
}

TEST(CheckpointSave, RefusesADeviceNodeSuchAsDevFull) {
  struct stat st {};
  if (::stat("/dev/full", &st) != 0) GTEST_SKIP() << "no /dev/full here";
  EXPECT_TRUE(throws_error([] { save_checkpoint("/dev/full", small_checkpoint()); },
                           ExitCode::kCheckpoint, {"/dev/full", "not a regular file"}));
  ASSERT_EQ(::stat("/dev/full", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "/dev/full must still be the device";
  EXPECT_TRUE(
      throws_error([] { check_writable_path("/dev/full", ExitCode::kCheckpoint, "--save"); },
                   ExitCode::kCheckpoint, {"--save /dev/full", "not a regular file"}));
}

TEST(CheckpointSave, MissingDirectoryIsAnError) {
  TempDir dir;
  const std::string p = dir.file("no/such/dir/a.ckpt");
  EXPECT_TRUE(throws_error([&] { save_checkpoint(p, small_checkpoint()); }, ExitCode::kCheckpoint,
                           {"a.ckpt", "cannot save", "unchanged"}));
  EXPECT_TRUE(throws_error([&] { check_writable_path(p, ExitCode::kCheckpoint, "--save"); },
                           ExitCode::kCheckpoint, {"does not exist"}));
  EXPECT_TRUE(
      throws_error([&] { check_writable_path(dir.path(), ExitCode::kCheckpoint, "--save"); },
                   ExitCode::kCheckpoint, {"is a directory"}));
}

TEST(CheckpointSave, ReadOnlyDirectoryFailsAndKeepsTheOldFile) {
  TempDir dir;
  const std::string sub = dir.file("ro");
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  const std::string p = sub + "/a.ckpt";
  save_checkpoint(p, small_checkpoint(1));
  const std::vector<uint8_t> before = read_bytes(p);
  ASSERT_EQ(::chmod(sub.c_str(), 0555), 0);
  if (::access(sub.c_str(), W_OK) == 0) {
    ::chmod(sub.c_str(), 0755);
    GTEST_SKIP() << "permissions are not enforced for this user (root?); the write-failure case "
                    "is covered by the file-size-limit test in test_faults";
  }
  EXPECT_TRUE(throws_error([&] { save_checkpoint(p, small_checkpoint(2)); }, ExitCode::kCheckpoint,
                           {"a.ckpt", "cannot save", "unchanged"}));
  ::chmod(sub.c_str(), 0755);
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(testing::count_files_containing(sub, ".tmp"), 0);
}

}  // namespace
}  // namespace mlp
