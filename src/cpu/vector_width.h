// The CPU's elementwise and Adam loops, each compiled for three x86-64 vector
// widths: AVX-512, AVX2 and baseline x86-64 (SSE2, four floats at a time; the
// portable build would run only that). Each call runs the widest variant this
// CPU has, unless a ScopedVectorWidth asks for a narrower one, so tests can run
// every loop at every width the test machine has and check the bits agree.
//
// Only for loops whose every element is one exactly rounded operation or a
// fixed sequence of them (a compare and select, an add in row order, Adam's
// + - * / sqrt): with the library compiled with -ffp-contract=off (no FMA
// contraction) those give the same bits at every width, so results never
// depend on the machine's vector width (tests/test_vector_width.cpp).
//
// Explicit variants rather than GCC's target_clones: target_clones picks once
// at load time and gives a test no way to run the narrower clones.
#pragma once

#include <vector>

namespace mlp::cpu {

enum class VectorWidth { kBaseline, kAvx2, kAvx512 };

// "baseline", "avx2", "avx512"
const char* vector_width_name(VectorWidth w);
// The widths this CPU runs, narrowest first; always starts with kBaseline.
const std::vector<VectorWidth>& supported_vector_widths();
// Whether this CPU runs w (one of supported_vector_widths()).
bool vector_width_supported(VectorWidth w);
// The width the loops run now: the widest supported, or a ScopedVectorWidth's.
VectorWidth active_vector_width();

// While alive, every loop on every thread (the pool's workers too) runs the
// given width. For tests and microbenchmarks, one at a time; not for use while
// another thread runs CPU ops. Throws std::invalid_argument if the CPU lacks
// the width.
class ScopedVectorWidth {
 public:
  explicit ScopedVectorWidth(VectorWidth w);
  ~ScopedVectorWidth();
  ScopedVectorWidth(const ScopedVectorWidth&) = delete;
  ScopedVectorWidth& operator=(const ScopedVectorWidth&) = delete;

 private:
  VectorWidth previous_;
};

// The variant of a loop for the active width.
template <class Fn>
Fn pick_vector_variant(Fn baseline, Fn avx2, Fn avx512) {
  switch (active_vector_width()) {
    case VectorWidth::kAvx512:
      return avx512;
    case VectorWidth::kAvx2:
      return avx2;
    case VectorWidth::kBaseline:
      break;
  }
  return baseline;
}

}  // namespace mlp::cpu

// MLP_VECTOR_VARIANTS(name, body, (params), (args)) defines `void name(params)`,
// which runs `body(args)` compiled for the active width; `body` must be an
// always_inline function, so each variant inlines its own copy of the loop
// and the compiler vectorizes that copy for the variant's target.
#if defined(__x86_64__) && defined(__GNUC__)
#define MLP_VECTOR_VARIANTS(name, body, params, args)                                     \
  void name##_baseline params { body args; }                                              \
  __attribute__((target("avx2,fma"))) void name##_avx2 params { body args; }              \
  __attribute__((target("avx512f"))) void name##_avx512 params { body args; }             \
  void name params {                                                                      \
    ::mlp::cpu::pick_vector_variant(&name##_baseline, &name##_avx2, &name##_avx512) args; \
  }
#else
#define MLP_VECTOR_VARIANTS(name, body, params, args) \
  void name params { body args; }
#endif

// always_inline, for the bodies of MLP_VECTOR_VARIANTS.
#define MLP_VECTOR_BODY inline __attribute__((always_inline))
