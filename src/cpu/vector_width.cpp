// Which vector width the CPU loops run (see vector_width.h).
#include "cpu/vector_width.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

namespace mlp::cpu {
namespace {

std::vector<VectorWidth> detect_widths() {
  std::vector<VectorWidth> widths{VectorWidth::kBaseline};
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    widths.push_back(VectorWidth::kAvx2);
  if (__builtin_cpu_supports("avx512f")) widths.push_back(VectorWidth::kAvx512);
#endif
  return widths;
}

// Process-wide, not per thread: the pool's workers run the loops too. Relaxed
// is enough: a ScopedVectorWidth is set before the ops it is for are started,
// and starting them (the pool's hand-off) orders the store before the workers'
// loads.
std::atomic<VectorWidth>& active() {
  static std::atomic<VectorWidth> width{supported_vector_widths().back()};
  return width;
}

}  // namespace

const char* vector_width_name(VectorWidth w) {
  switch (w) {
    case VectorWidth::kAvx512:
      return "avx512";
    case VectorWidth::kAvx2:
      return "avx2";
    case VectorWidth::kBaseline:
      break;
  }
  return "baseline";
}

const std::vector<VectorWidth>& supported_vector_widths() {
  static const std::vector<VectorWidth> widths = detect_widths();
  return widths;
}

bool vector_width_supported(VectorWidth w) {
  const std::vector<VectorWidth>& widths = supported_vector_widths();
  return std::find(widths.begin(), widths.end(), w) != widths.end();
}

VectorWidth active_vector_width() { return active().load(std::memory_order_relaxed); }

ScopedVectorWidth::ScopedVectorWidth(VectorWidth w) : previous_(active_vector_width()) {
  if (!vector_width_supported(w))
    throw std::invalid_argument(std::string("this CPU does not run the ") + vector_width_name(w) +
                                " vector width");
  active().store(w, std::memory_order_relaxed);
}

ScopedVectorWidth::~ScopedVectorWidth() { active().store(previous_, std::memory_order_relaxed); }

}  // namespace mlp::cpu
