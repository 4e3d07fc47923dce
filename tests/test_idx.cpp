// IDX reader and load_split: valid files the test writes itself (raw and
// gzipped), then every malformed case DATA.md lists. Each rejection must be
// Error(kData) with a message that names the file and the problem, and a
// hostile header must never turn into a huge allocation.
#include <gtest/gtest.h>

#include "mlp/dataset.h"
#include "mlp/error.h"
#include "testing.h"

namespace mlp {
namespace {

using testing::idx_bytes;
using testing::pattern_bytes;
using testing::TempDir;
using testing::throws_error;

constexpr uint32_t kBig = 0x80000000u;  // 2^31

// ---- valid files -----------------------------------------------------------------

TEST(Idx, ReadsRawU8Images) {
  TempDir dir;
  const auto payload = pattern_bytes(3 * 28 * 28, 1);
  const std::string p = dir.file("images");
  testing::write_file(p, idx_bytes(0x08, {3, 28, 28}, payload));
  const IdxArray a = read_idx(p);
  EXPECT_EQ(a.type, 0x08);
  EXPECT_EQ(a.dims, (std::vector<uint32_t>{3, 28, 28}));
  EXPECT_EQ(a.data, payload);
}

TEST(Idx, ReadsGzipTransparently) {
  TempDir dir;
  const auto payload = pattern_bytes(5 * 28 * 28, 2);
  const auto bytes = idx_bytes(0x08, {5, 28, 28}, payload);
  // Both with and without the .gz suffix: gzip is detected from the magic bytes.
  for (const std::string name : {"images.gz", "images-no-suffix"}) {
    const std::string p = dir.file(name);
    testing::write_gzip(p, bytes);
    const IdxArray a = read_idx(p);
    EXPECT_EQ(a.dims, (std::vector<uint32_t>{5, 28, 28})) << name;
    EXPECT_EQ(a.data, payload) << name;
  }
}

TEST(Idx, AcceptsEveryListedTypeWithItsSize) {
  // type -> element size: a reader that sized f64 as 4 bytes would call this truncated.
  const std::vector<std::pair<uint8_t, std::size_t>> types{{0x08, 1}, {0x09, 1}, {0x0B, 2},
                                                           {0x0C, 4}, {0x0D, 4}, {0x0E, 8}};
  for (auto [type, size] : types) {
    const auto payload = pattern_bytes(2 * 3 * size, type);
    const IdxArray a = parse_idx(idx_bytes(type, {2, 3}, payload), "mem");
    EXPECT_EQ(a.type, type);
    EXPECT_EQ(a.data, payload);
    // One byte less must be refused: the element size is really used.
    auto shorter = idx_bytes(type, {2, 3}, payload);
    shorter.pop_back();
    EXPECT_TRUE(throws_error([&] { parse_idx(shorter, "short.idx"); }, ExitCode::kData,
                             {"short.idx", "truncated"}))
        << "type " << int{type};
  }
}

// ---- malformed headers and sizes (parse_idx and read_idx) ---------------------------

struct BadCase {
  const char* label;
  std::vector<uint8_t> bytes;
  std::vector<std::string> words;  // the problem, as the message must say it
};

std::vector<BadCase> bad_cases() {
  const auto ok = pattern_bytes(4 * 2 * 3, 3);
  std::vector<BadCase> c;
  c.push_back({"empty", {}, {"empty"}});
  const std::string html = "<!DOCTYPE html><html><body>404 Not Found</body></html>";
  c.push_back({"html", std::vector<uint8_t>(html.begin(), html.end()), {"HTML"}});
  const std::string xml = "<?xml version=\"1.0\"?><Error>AccessDenied</Error>";
  c.push_back({"xml", std::vector<uint8_t>(xml.begin(), xml.end()), {"<"}});
  auto nz0 = idx_bytes(0x08, {4, 2, 3}, ok);
  nz0[0] = 0x01;
  c.push_back({"nonzero byte 0", nz0, {"magic"}});
  auto nz1 = idx_bytes(0x08, {4, 2, 3}, ok);
  nz1[1] = 0x08;
  c.push_back({"nonzero byte 1", nz1, {"magic"}});
  c.push_back({"unknown type 0x07", idx_bytes(0x07, {4, 2, 3}, ok), {"type", "0x07"}});
  c.push_back({"unknown type 0xff", idx_bytes(0xFF, {4, 2, 3}, ok), {"type", "0xff"}});
  c.push_back({"zero dimensions", idx_bytes(0x08, {}, ok), {"zero dimensions"}});
  c.push_back({"3 bytes", {0, 0, 8}, {"truncated"}});
  auto hdr = idx_bytes(0x08, {4, 2, 3}, {});
  hdr.resize(4 + 4 * 2 + 1);  // the third dimension is cut short
  c.push_back({"truncated header", hdr, {"truncated"}});
  auto data = idx_bytes(0x08, {4, 2, 3}, ok);
  data.resize(data.size() - 5);
  c.push_back({"truncated data", data, {"truncated"}});
  auto trailing = idx_bytes(0x08, {4, 2, 3}, ok);
  trailing.insert(trailing.end(), {1, 2, 3});
  c.push_back({"trailing bytes", trailing, {"3 trailing bytes"}});
  c.push_back({"zero count", idx_bytes(0x08, {0, 28, 28}, {}), {"zero"}});
  c.push_back({"zero inner dim", idx_bytes(0x08, {10, 0, 28}, {}), {"zero"}});
  return c;
}

TEST(Idx, ParseRejectsEveryMalformedCase) {
  for (const auto& bc : bad_cases()) {
    std::vector<std::string> words = bc.words;
    words.push_back("where/file.idx");
    EXPECT_TRUE(
        throws_error([&] { parse_idx(bc.bytes, "where/file.idx"); }, ExitCode::kData, words))
        << bc.label;
  }
}

TEST(Idx, ReadRejectsEveryMalformedCaseNamingThePath) {
  TempDir dir;
  for (const auto& bc : bad_cases()) {
    const std::string p = dir.file("bad-file");
    testing::write_file(p, bc.bytes);
    std::vector<std::string> words = bc.words;
    words.push_back(p);
    EXPECT_TRUE(throws_error([&] { read_idx(p); }, ExitCode::kData, words)) << bc.label;
  }
}

TEST(Idx, GzippedBytesParsedAsRawSayGunzip) {
  const auto gz = testing::gzip_bytes(idx_bytes(0x08, {2}, {1, 2}));
  ASSERT_GE(gz.size(), 2u);
  ASSERT_EQ(gz[0], 0x1F);  // the test's own premise: this really is gzip
  EXPECT_TRUE(throws_error([&] { parse_idx(gz, "labels.idx"); }, ExitCode::kData,
                           {"labels.idx", "gunzip"}));
}

// A header may claim any size; the reader must compare it with the bytes
// present (in 64 bits, overflow-checked) before allocating anything.
TEST(Idx, HugeDimensionsAreRejectedWithoutAllocating) {
  const std::vector<std::pair<const char*, std::vector<uint8_t>>> cases{
      {"u8 2^31 x 2^31 x 2^31 (2^93 bytes)", idx_bytes(0x08, {kBig, kBig, kBig}, {})},
      {"f64 2^31 x 2^31 (2^62 elements, 2^65 bytes)", idx_bytes(0x0E, {kBig, kBig}, {})},
      {"f32 2^31 x 2^31 (2^64 bytes)", idx_bytes(0x0D, {kBig, kBig}, {})},
      {"i32 2^32-1 x 2^32-1", idx_bytes(0x0C, {0xFFFFFFFFu, 0xFFFFFFFFu}, {1, 2, 3})},
      {"u8 4 x 2^32-1, 4 data bytes", idx_bytes(0x08, {4, 0xFFFFFFFFu}, {1, 2, 3, 4})},
      {"255 dimensions of 2^32-1", [] {
         std::vector<uint32_t> dims(255, 0xFFFFFFFFu);
         return idx_bytes(0x08, dims, {});
       }()}};
  for (const auto& [label, bytes] : cases) {
    try {
      parse_idx(bytes, "huge.idx");
      ADD_FAILURE() << label << ": accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.code(), ExitCode::kData) << label;
      EXPECT_NE(msg.find("huge.idx"), std::string::npos) << label << ": " << msg;
      EXPECT_TRUE(msg.find("overflow") != std::string::npos ||
                  msg.find("truncated") != std::string::npos)
          << label << ": " << msg;
    } catch (const std::exception& e) {  // std::bad_alloc, std::length_error, ...
      ADD_FAILURE() << label << ": " << e.what();
    }
  }
}

TEST(Idx, CorruptGzipIsRejected) {
  TempDir dir;
  const auto bytes = idx_bytes(0x08, {40, 28, 28}, pattern_bytes(40 * 28 * 28, 9));
  const auto gz = testing::gzip_bytes(bytes);
  ASSERT_GT(gz.size(), 1000u);

  auto truncated = gz;
  truncated.resize(gz.size() / 2);
  const std::string tp = dir.file("truncated.gz");
  testing::write_file(tp, truncated);
  EXPECT_TRUE(throws_error([&] { read_idx(tp); }, ExitCode::kData, {tp, "gzip"}));

  // Cut only the 8-byte trailer (CRC32 + length): all data decompresses, the stream is incomplete.
  auto no_trailer = gz;
  no_trailer.resize(gz.size() - 8);
  const std::string np = dir.file("no-trailer.gz");
  testing::write_file(np, no_trailer);
  EXPECT_TRUE(throws_error([&] { read_idx(np); }, ExitCode::kData, {np, "gzip"}));

  auto flipped = gz;
  for (std::size_t i = gz.size() / 3; i < gz.size() / 3 + 16; ++i) flipped[i] ^= 0x5A;
  const std::string fp = dir.file("flipped.gz");
  testing::write_file(fp, flipped);
  EXPECT_TRUE(throws_error([&] { read_idx(fp); }, ExitCode::kData, {fp, "gzip"}));

  const std::string hp = dir.file("header-only.gz");  // gzip magic and nothing else
  testing::write_file(hp, {0x1F, 0x8B});
  EXPECT_TRUE(throws_error([&] { read_idx(hp); }, ExitCode::kData, {hp}));
}

TEST(Idx, MissingFileNamesPathAndHowToGetData) {
  TempDir dir;
  const std::string p = dir.file("nope-idx3-ubyte");
  EXPECT_TRUE(throws_error([&] { read_idx(p); }, ExitCode::kData, {p, "fetch-data"}));
}

// ---- load_split: roles, shapes, counts, labels ------------------------------------------

TEST(LoadSplit, LoadsRawAndGzippedSplits) {
  for (bool gz : {false, true}) {
    TempDir dir;
    const auto train = testing::make_split(7, 28, 28, 11);
    const auto test = testing::make_split(3, 28, 28, 12);
    testing::write_split(dir.path(), "train", train, 28, 28, gz);
    testing::write_split(dir.path(), "t10k", test, 28, 28, gz);
    const Dataset tr = load_split(dir.path(), Split::kTrain);
    const Dataset te = load_split(dir.path(), Split::kTest);
    EXPECT_EQ(tr.count, 7);
    EXPECT_EQ(tr.rows, 28);
    EXPECT_EQ(tr.cols, 28);
    EXPECT_EQ(tr.pixels(), 784);
    EXPECT_EQ(tr.images, train.images) << "gz " << gz;
    EXPECT_EQ(tr.labels, train.labels) << "gz " << gz;
    EXPECT_EQ(te.count, 3);
    EXPECT_EQ(te.images, test.images);
    EXPECT_EQ(te.labels, test.labels);
    EXPECT_NE(tr.images_path.find("train-images-idx3-ubyte"), std::string::npos);
    EXPECT_EQ(
        tr.images_path.size() >= 3 && tr.images_path.substr(tr.images_path.size() - 3) == ".gz",
        gz);
  }
}

TEST(LoadSplit, HonoursExpectedPixels) {
  TempDir dir;
  testing::write_split(dir.path(), "train", testing::make_split(4, 5, 3, 13), 5, 3);
  const Dataset ds = load_split(dir.path(), Split::kTrain, 15);
  EXPECT_EQ(ds.count, 4);
  EXPECT_EQ(ds.pixels(), 15);
}

// Writes a train split whose files the caller then overwrites.
struct SplitDir {
  TempDir dir;
  std::string images = dir.file("train-images-idx3-ubyte");
  std::string labels = dir.file("train-labels-idx1-ubyte");
  SplitDir() {
    testing::write_split(dir.path(), "train", testing::make_split(6, 28, 28, 21), 28, 28);
  }
  Dataset load() const { return load_split(dir.path(), Split::kTrain); }
};

TEST(LoadSplit, ImagesAndLabelsSwapped) {
  SplitDir s;
  const std::string images = testing::read_text(s.images);
  const std::string labels = testing::read_text(s.labels);
  testing::write_text(s.images, labels);
  testing::write_text(s.labels, images);
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.images, "swapped"}));
  // Only the labels file wrong: a second images file in its place.
  testing::write_text(s.images, images);
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.labels, "swapped"}));
}

TEST(LoadSplit, WrongTypeOrRankForItsRole) {
  SplitDir s;
  testing::write_file(s.images, idx_bytes(0x0D, {6, 28, 7}, pattern_bytes(6 * 28 * 28, 1)));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.images, "0x0d"}));
  testing::write_file(s.images, idx_bytes(0x08, {6, 784}, pattern_bytes(6 * 784, 1)));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.images, "2 dimension"}));
  testing::write_split(s.dir.path(), "train", testing::make_split(6, 28, 28, 21), 28, 28);
  testing::write_file(s.labels, idx_bytes(0x08, {6, 1}, {1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.labels, "2 dimension"}));
}

TEST(LoadSplit, ImagesNot28x28) {
  SplitDir s;
  testing::write_file(s.images, idx_bytes(0x08, {6, 27, 28}, pattern_bytes(6 * 27 * 28, 1)));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.images, "27x28"}));
  // 28x28 files are wrong for a model built for other sizes.
  testing::write_split(s.dir.path(), "train", testing::make_split(6, 28, 28, 21), 28, 28);
  EXPECT_TRUE(throws_error([&] { load_split(s.dir.path(), Split::kTrain, 100); }, ExitCode::kData,
                           {s.images, "784", "100"}));
}

TEST(LoadSplit, CountMismatch) {
  SplitDir s;
  testing::write_file(s.labels, idx_bytes(0x08, {5}, {1, 2, 3, 4, 5}));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.images, s.labels, "6", "5"}));
}

TEST(LoadSplit, LabelOutOfRange) {
  SplitDir s;
  testing::write_file(s.labels, idx_bytes(0x08, {6}, {0, 9, 3, 10, 4, 1}));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.labels, "label 10", "index 3"}));
  testing::write_file(s.labels, idx_bytes(0x08, {6}, {0, 9, 3, 1, 4, 255}));
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.labels, "255"}));
}

TEST(LoadSplit, MalformedFileInsideSplitNamesIt) {
  SplitDir s;
  testing::write_text(s.labels, "<html>Rate limit exceeded</html>");
  EXPECT_TRUE(throws_error([&] { s.load(); }, ExitCode::kData, {s.labels, "HTML"}));
}

TEST(LoadSplit, MissingFilesNamePathAndHowToGetData) {
  TempDir dir;
  EXPECT_TRUE(throws_error([&] { load_split(dir.path(), Split::kTest); }, ExitCode::kData,
                           {dir.file("t10k-images-idx3-ubyte"), "fetch-data", "--data"}));
  // Images present, labels missing: the labels path is the one named.
  testing::write_split(dir.path(), "t10k", testing::make_split(2, 28, 28, 5), 28, 28);
  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte"));
  EXPECT_TRUE(throws_error([&] { load_split(dir.path(), Split::kTest); }, ExitCode::kData,
                           {dir.file("t10k-labels-idx1-ubyte")}));
  const std::string nodir = dir.file("no/such/dir");
  EXPECT_TRUE(throws_error([&] { load_split(nodir, Split::kTrain); }, ExitCode::kData, {nodir}));
}

}  // namespace
}  // namespace mlp
