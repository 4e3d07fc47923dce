// The flat parameter buffer's alignment: every weight and bias tensor starts on
// a multiple of kTensorAlignFloats floats (64 bytes, a cache line), so a CPU
// loop's 64-byte vector loads never straddle two lines. ParamLayout
// (mlp/model.h) and the fused engine's plan (mlp/fused_schedule.h, shared with
// the GPU kernels) lay tensors out with it, so checkpoints move between them.
#pragma once

#include <stdint.h>

namespace mlp {

inline constexpr int64_t kTensorAlignFloats = 16;

// n floats rounded up to the next tensor boundary.
constexpr int64_t align_tensor_floats(int64_t n) {
  return (n + kTensorAlignFloats - 1) / kTensorAlignFloats * kTensorAlignFloats;
}

}  // namespace mlp
