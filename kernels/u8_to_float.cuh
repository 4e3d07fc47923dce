// u8 -> float input conversion: out = in / 255, or (in > 127 ? 1 : 0) when
// binarizing. Same arithmetic as cpu::u8_to_float, so results are bitwise equal.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

inline constexpr int kU8ToFloatBlock = 256;

// in, out: n elements in device memory.
void u8_to_float(const uint8_t* in, float* out, int64_t n, bool binarize, cudaStream_t stream);

}  // namespace mlp::kernels
