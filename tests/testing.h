// Shared test helpers: temporary directories, IDX/gzip writers, NaN-safe
// comparisons, backend-memory round trips and a child-process runner for the
// CLI. Header-only (inline), so each test file includes it independently.
// Invariant: every comparison helper fails on NaN (it tests `err <= tol`).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/rng.h"

extern char** environ;

namespace mlp::testing {

// ---- files -------------------------------------------------------------------

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mlp-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline void write_text(const std::string& path, const std::string& text) {
  write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// gzip through zlib, exactly what `gzip` or a mirror's .gz would hold.
inline void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  if (!f) throw std::runtime_error("gzopen failed for " + path);
  const int n = bytes.empty() ? 0 : gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  const int rc = gzclose(f);
  if (n != static_cast<int>(bytes.size()) || rc != Z_OK)
    throw std::runtime_error("gzwrite failed for " + path);
}

inline std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& bytes) {
  TempDir dir;
  const std::string p = dir.file("x.gz");
  write_gzip(p, bytes);
  const std::string s = read_text(p);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// An IDX file: magic 00 00 type ndim, big-endian u32 dims, then the payload.
inline std::vector<uint8_t> idx_bytes(uint8_t type, const std::vector<uint32_t>& dims,
                                      const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(d >> shift));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// Deterministic pseudo-random bytes (so gzip streams are not trivially short).
inline std::vector<uint8_t> pattern_bytes(std::size_t n, uint64_t seed) {
  Pcg32 rng(seed, 77);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng.next());
  return v;
}

// count images of rows x cols plus labels, written as an MNIST split into dir.
struct SplitFiles {
  std::vector<uint8_t> images;  // payload only
  std::vector<uint8_t> labels;
};

inline SplitFiles make_split(uint32_t count, uint32_t rows, uint32_t cols, uint64_t seed,
                             int classes = kClasses) {
  SplitFiles s;
  s.images = pattern_bytes(std::size_t{count} * rows * cols, seed);
  Pcg32 rng(seed, 78);
  for (uint32_t i = 0; i < count; ++i)
    s.labels.push_back(static_cast<uint8_t>(rng.below(static_cast<uint32_t>(classes))));
  return s;
}

// prefix "train" or "t10k"; gz appends ".gz" and compresses.
inline void write_split(const std::string& dir, const std::string& prefix, const SplitFiles& s,
                        uint32_t rows, uint32_t cols, bool gz = false) {
  const auto count = static_cast<uint32_t>(s.labels.size());
  const auto images = idx_bytes(0x08, {count, rows, cols}, s.images);
  const auto labels = idx_bytes(0x08, {count}, s.labels);
  const std::string ip = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string lp = dir + "/" + prefix + "-labels-idx1-ubyte";
  if (gz) {
    write_gzip(ip + ".gz", images);
    write_gzip(lp + ".gz", labels);
  } else {
    write_file(ip, images);
    write_file(lp, labels);
  }
}

// ---- comparisons (NaN never passes) ----------------------------------------------

// |got - want| <= atol + rtol * |want|, false for NaN or infinite values.
inline ::testing::AssertionResult near(double got, double want, double atol, double rtol = 0.0) {
  const double err = std::abs(got - want);
  if (std::isfinite(got) && std::isfinite(want) && err <= atol + rtol * std::abs(want))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (|err| " << err
                                       << " > " << atol << " + " << rtol << "*|want|)";
}

// Element-wise near() over two arrays; reports the first failing index.
template <class A, class B>
::testing::AssertionResult all_near(const A& got, const B& want, double atol, double rtol = 0.0) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    auto r = near(static_cast<double>(got[i]), static_cast<double>(want[i]), atol, rtol);
    if (!r) return ::testing::AssertionFailure() << "index " << i << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

// Runs f, which must throw mlp::Error with `code` and a message containing
// every string in `parts`. Returns the message for further checks.
template <class F>
::testing::AssertionResult throws_error(F&& f, ExitCode code,
                                        const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (e.code() != code)
      return ::testing::AssertionFailure() << "exit code " << static_cast<int>(e.code())
                                           << ", want " << static_cast<int>(code) << ": " << msg;
    for (const auto& p : parts)
      if (msg.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << msg;
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-mlp exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// ---- backend memory ----------------------------------------------------------------

// A host vector mirrored in backend memory.
template <class T>
struct DeviceVec {
  DeviceVec(Backend& be, const std::vector<T>& host) : be_(be), n_(host.size()) {
    buf_ = be.alloc(host.size() * sizeof(T));
    be.upload(buf_.data(), host.data(), host.size() * sizeof(T));
  }
  T* get() const { return buf_.as<T>(); }
  std::vector<T> download() const {
    std::vector<T> out(n_);
    be_.download(out.data(), buf_.data(), n_ * sizeof(T));
    return out;
  }

 private:
  Backend& be_;
  std::size_t n_;
  Buffer buf_;
};

inline std::vector<float> random_floats(std::size_t n, uint64_t seed, double scale = 1.0) {
  Pcg32 rng(seed, 99);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * scale);
  return v;
}

// ---- processes -------------------------------------------------------------------------

struct CommandResult {
  int exit_code = -1;  // exit status, or 128 + signal
  std::string out, err;
};

// Runs argv[0] (a path) with stdout and stderr captured into files (no pipes,
// so a chatty child can never deadlock against us).
inline CommandResult run_command(const std::vector<std::string>& argv) {
  TempDir dir;
  const std::string out_path = dir.file("stdout"), err_path = dir.file("stderr");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  CommandResult r;
  if (rc != 0) {
    r.err = "posix_spawn failed for " + argv[0];
    return r;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

// Runs the mnist-mlp binary this test target was built against (MLP_CLI_PATH).
inline CommandResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), MLP_CLI_PATH);
  return run_command(args);
}

// A command's exit status and both streams: the message of a failed expectation.
inline std::string describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- real data -------------------------------------------------------------------------

// $MNIST_DIR, else data/mnist in the source tree.
inline std::string mnist_dir() {
  const char* env = std::getenv("MNIST_DIR");
  if (env && *env) return env;
  return std::string(MLP_SOURCE_DIR) + "/data/mnist";
}

// True when all four files exist, raw or gzipped.
inline bool split_files_present(const std::string& dir) {
  for (const char* base : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    const std::string p = dir + "/" + base;
    if (!std::filesystem::exists(p) && !std::filesystem::exists(p + ".gz")) return false;
  }
  return true;
}

}  // namespace mlp::testing
