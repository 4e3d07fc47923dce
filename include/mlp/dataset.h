// Dataset: MNIST-format images and labels in host memory, validated once at
// load. Images stay uint8 (row-major, count x rows x cols); the backend scales
// them to float on the device, so host memory and the H2D copy are 4x smaller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlp {

// One IDX file, fully validated (docs/data.md describes the format).
struct IdxArray {
  uint8_t type = 0;            // 0x08 = u8, ... (only u8 is accepted by load_split)
  std::vector<uint32_t> dims;  // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;   // raw payload, big-endian for multi-byte types
};

// Reads a raw or gzip-compressed IDX file (gzip detected from its magic bytes).
// Throws Error(kData) naming the file and the problem; never allocates more
// than the file's own (decompressed) size.
IdxArray read_idx(const std::string& path);
// The same, from bytes already in memory; `name` is used in messages.
IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& name);

struct Dataset {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> images;  // (count, rows, cols)
  std::vector<uint8_t> labels;  // (count), each < kClasses
  std::string images_path;
  std::string labels_path;
  int64_t pixels() const { return rows * cols; }
};

inline constexpr int kClasses = 10;

enum class Split { kTrain, kTest };

// Loads `train` or `t10k` images+labels from dir, trying the raw name and then
// name + ".gz". Checks kinds, 28x28 (expected_pixels), matching counts, labels < 10.
Dataset load_split(const std::string& dir, Split split, int64_t expected_pixels = 28 * 28);

}  // namespace mlp
