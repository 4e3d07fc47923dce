// Output-path checks (see path_guard.h).
#include "cli/path_guard.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "mlp/checkpoint.h"
#include "mlp/error.h"

namespace mlp::cli {
namespace {

std::string normalized(const std::string& p) {
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(p, ec);
  if (ec) return p;
  const std::filesystem::path canon = std::filesystem::weakly_canonical(abs, ec);
  return (ec ? abs.lexically_normal() : canon).string();
}

bool allowed_pair(const std::vector<std::pair<std::string, std::string>>& allowed,
                  const std::string& a, const std::string& b) {
  for (const auto& [x, y] : allowed)
    if ((x == a && y == b) || (x == b && y == a)) return true;
  return false;
}

void refuse_same(const NamedPath& out, const NamedPath& other) {
  throw usage_error(fmt::format(
      "{} {} is the same file as {} {}; writing it would destroy that file: give another path",
      out.flag, out.path, other.flag, other.path));
}

// The first bytes of an existing regular file, or nothing.
std::string head_of(const std::string& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<std::size_t>(in.gcount()));
  return s;
}

}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea != eb) return false;
  return normalized(a) == normalized(b);
}

void check_distinct(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs,
                    const std::vector<std::pair<std::string, std::string>>& allowed) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    if (out.path.empty()) continue;
    for (const NamedPath& in : inputs)
      if (!in.path.empty() && !allowed_pair(allowed, out.flag, in.flag) &&
          same_file(out.path, in.path))
        refuse_same(out, in);
    for (std::size_t j = i + 1; j < outputs.size(); ++j)
      if (!outputs[j].path.empty() && !allowed_pair(allowed, out.flag, outputs[j].flag) &&
          same_file(out.path, outputs[j].path))
        refuse_same(out, outputs[j]);
  }
}

void check_replaceable(const NamedPath& out, OutputKind kind) {
  struct stat st {};
  if (out.path.empty() || ::stat(out.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size == 0)
    return;  // nothing there (other kinds are refused by check_writable_path)
  const std::string head = head_of(out.path, 9);
  bool ok = false;
  const char* what = "";
  switch (kind) {
    case OutputKind::kCheckpoint:
      ok = head.size() >= sizeof(kCheckpointMagic) &&
           std::memcmp(head.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) == 0;
      what = "an mnist-mlp checkpoint";
      break;
    case OutputKind::kJsonLines:
      ok = head[0] == '{';
      what = "a JSON-lines log";
      break;
    case OutputKind::kSafetensors:
      ok = head.size() == 9 && head[8] == '{';
      what = "a safetensors file";
      break;
  }
  if (!ok)
    throw usage_error(
        fmt::format("{} {}: the file exists and is not {}; refusing to replace it (remove it "
                    "first or give another path)",
                    out.flag, out.path, what));
}

std::vector<NamedPath> mnist_inputs(const std::string& dir) {
  std::vector<NamedPath> v;
  for (const char* split : {"train", "t10k"})
    for (const char* part : {"-images-idx3-ubyte", "-labels-idx1-ubyte"})
      for (const char* ext : {"", ".gz"})
        v.push_back({"the data file", fmt::format("{}/{}{}{}", dir, split, part, ext)});
  return v;
}

}  // namespace mlp::cli
