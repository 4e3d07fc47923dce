// Flag validators (see flag_checks.h).
#include "cli/flag_checks.h"

#include <fmt/format.h>

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>

#include "mlp/checkpoint.h"

namespace mlp::cli {
namespace {

// The whole string as a float, or NaN when it is not one.
float parse_f32(const std::string& s) {
  if (s.empty()) return NAN;
  char* end = nullptr;
  errno = 0;
  const float v = std::strtof(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return NAN;
  return v;
}

// Splits on ',' keeping empty pieces, so "1,,2" and "1," are seen as malformed.
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts{""};
  for (char c : s) {
    if (c == ',')
      parts.emplace_back();
    else
      parts.back() += c;
  }
  return parts;
}

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno == ERANGE || end != s.c_str() + s.size()) return false;
  out = v;
  return true;
}

}  // namespace

const CLI::Validator kPositiveF32(
    [](std::string& s) -> std::string {
      const float v = parse_f32(s);
      if (std::isfinite(v) && v >= FLT_MIN) return {};
      return fmt::format(
          "must be a number > 0 that a 32-bit float holds ({:g} .. {:g}), got '{}'{}", FLT_MIN,
          FLT_MAX, s,
          std::isinf(v) ? " (infinite as a 32-bit float)"
          : v == 0.0f && !s.empty() && std::strtod(s.c_str(), nullptr) != 0
              ? " (0 as a 32-bit float)"
              : "");
    },
    "> 0 (f32)");

const CLI::Validator kUnitIntervalF32(
    [](std::string& s) -> std::string {
      const float v = parse_f32(s);
      if (v >= 0.0f && v <= 0.999999f) return {};
      return fmt::format("must be a number in [0, 0.999999], got '{}'", s);
    },
    "[0, 0.999999]");

const CLI::Validator kUnsigned64(
    [](std::string& s) -> std::string {
      uint64_t v = 0;
      if (parse_u64(s, v)) return {};
      return fmt::format("must be a whole number in 0 .. 18446744073709551615, got '{}'", s);
    },
    "0..2^64-1");

const CLI::Validator kNonEmpty(
    [](std::string& s) -> std::string { return s.empty() ? "must not be empty" : ""; }, "");

int64_t max_hidden_layers() { return static_cast<int64_t>(kCheckpointMaxLayers) - 2; }

const CLI::Validator kHiddenList(
    [](std::string& s) -> std::string {
      const std::vector<std::string> parts = split(s);
      const std::string form =
          fmt::format("comma-separated layer sizes in 1..65536, 1 to {} of them, e.g. 500,500,500",
                      max_hidden_layers());
      if (static_cast<int64_t>(parts.size()) > max_hidden_layers())
        return fmt::format("{} hidden layers is more than a checkpoint can hold; give {}",
                           parts.size(), form);
      for (const std::string& p : parts) {
        uint64_t v = 0;
        if (!parse_u64(p, v) || v < 1 || v > 65536)
          return fmt::format("'{}' is not a layer size ({}) in '{}'", p, form, s);
      }
      return {};
    },
    "N,N,...");

std::vector<int64_t> parse_int_list(const std::string& s) {
  std::vector<int64_t> v;
  for (const std::string& p : split(s)) {
    uint64_t x = 0;
    parse_u64(p, x);
    v.push_back(static_cast<int64_t>(x));
  }
  return v;
}

const CLI::Validator kIndexList(
    [](std::string& s) -> std::string {
      for (const std::string& p : split(s)) {
        uint64_t v = 0;
        if (!parse_u64(p, v) || v > (uint64_t{1} << 40))
          return fmt::format(
              "'{}' is not an image index in '{}' (give I or I,J,... with "
              "0-based whole numbers)",
              p, s);
      }
      return {};
    },
    "I[,J...]");

}  // namespace mlp::cli
