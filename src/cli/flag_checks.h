// CLI11 validators that check a flag's value as the type the program uses:
// float32 Adam hyperparameters (1e39 is inf and 1e-46 is 0 as f32; NaN is
// refused), unsigned 64-bit seeds (no wrap of -1, no clamping of 2^64),
// non-empty paths, and strict comma-separated lists (no empty entries, no
// trailing comma). Each message names what is accepted; CLI11 adds the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace mlp::cli {

// A float32 > 0 that is finite and not rounded to 0 (>= FLT_MIN, the smallest normal).
extern const CLI::Validator kPositiveF32;
// A float32 in [0, 0.999999] (NaN refused).
extern const CLI::Validator kUnitIntervalF32;
// A decimal integer in 0 .. 2^64-1.
extern const CLI::Validator kUnsigned64;
// Any non-empty string.
extern const CLI::Validator kNonEmpty;

// Largest number of --hidden entries: a checkpoint holds at most
// kCheckpointMaxLayers sizes, the inputs and the classes included.
int64_t max_hidden_layers();
// "--hidden": 1..max_hidden_layers() comma-separated integers in 1..65536.
extern const CLI::Validator kHiddenList;
// Parses a list kHiddenList accepted.
std::vector<int64_t> parse_int_list(const std::string& s);
// "I" or "I,J,...": non-negative decimal integers, no empty entries.
extern const CLI::Validator kIndexList;

}  // namespace mlp::cli
