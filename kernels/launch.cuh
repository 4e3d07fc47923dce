// Launch helpers shared by every kernel in this folder: grid sizes computed in
// int64 and checked against CUDA's grid limit before the narrowing cast, so a
// huge n fails with a message instead of launching a truncated grid.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cuda_check.cuh"  // defines: MLP_CUDA_CHECK, MLP_CUDA_CHECK_LAUNCH

namespace mlp::kernels {

inline constexpr int kWarpSize = 32;

// True when every index below n fits a signed 32-bit int: kernels then do
// their index math in 32 bits (fewer registers and instructions than int64).
inline bool fits_int32(int64_t n) { return n >= 0 && n <= 0x7fffffff; }

// ceil(n / block) as a grid x-dimension (at most 2^31 - 1 blocks).
inline unsigned grid_for(int64_t n, int block) {
  const int64_t blocks = (n + block - 1) / block;
  if (blocks > 0x7fffffff)
    throw Error(ExitCode::kDevice,
                "kernel launch: " + std::to_string(n) + " elements need more than 2^31-1 blocks");
  return static_cast<unsigned>(blocks);
}

}  // namespace mlp::kernels
