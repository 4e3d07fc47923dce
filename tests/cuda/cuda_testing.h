// Helpers for the GPU tests: one CUDA backend per process (creating the
// context is the slow part), a fixture that skips with the reason when no
// device is usable, and the ONE tolerance formula every CPU-vs-CUDA
// comparison in tests/cuda uses:
//
//     |cuda - cpu| <= atol + rtol * |cpu|      (false for NaN or Inf)
//
// with per-op atol/rtol stated next to each test and derived there (exact ops
// use 0/0; sums use the standard rounding bound 2 * n * u * sum|terms|, u = 2^-24).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "testing.h"  // defines: near, all_near, DeviceVec, random_floats, mnist_dir

namespace mlp::cuda_testing {

inline constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // float's u = 2^-24

// The process-wide CUDA backend, created on first use; null when no device.
inline Backend* gpu_backend() {
  static std::unique_ptr<Backend> be =
      cuda_unavailable_reason().empty() ? make_cuda_backend({}) : nullptr;
  return be.get();
}

// The reference: the CPU backend, through the same public Backend ops.
inline Backend& cpu_backend() {
  static std::unique_ptr<Backend> be = make_cpu_backend({});
  return *be;
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device: " << reason;
    gpu_ = gpu_backend();
  }
  Backend& gpu() { return *gpu_; }
  Backend& cpu() { return cpu_backend(); }

 private:
  Backend* gpu_ = nullptr;
};

// Element-wise tolerance check with a per-element atol; reports the first
// failing index and how many elements fail.
inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<float>& want,
                                            const std::vector<double>& atol, double rtol) {
  if (got.size() != want.size() || atol.size() != want.size())
    return ::testing::AssertionFailure() << "size mismatch";
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    const bool ok = std::isfinite(got[i]) && std::isfinite(want[i]) &&
                    err <= atol[i] + rtol * std::abs(static_cast<double>(want[i]));
    if (!ok && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << want.size() << " elements out of tolerance; first at " << first
         << ": got " << got[first] << ", want " << want[first] << ", atol " << atol[first]
         << ", rtol " << rtol;
}

inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<float>& want, double atol,
                                            double rtol) {
  return all_close(got, want, std::vector<double>(want.size(), atol), rtol);
}

inline float max_abs(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::abs(x));
  return m;
}

}  // namespace mlp::cuda_testing
