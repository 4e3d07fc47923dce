// Free functions that mlp::Buffer calls to release CUDA memory. A Buffer is the
// RAII owner (move-only, noexcept moves); these must never throw, and they
// ignore errors: at teardown, or after a sticky kernel fault, there is nobody
// left to report a failed free to, and the process is about to exit anyway.
#pragma once

#include <cuda_runtime_api.h>

namespace mlp::cuda {

inline void free_device(void* p) noexcept { (void)cudaFree(p); }      // cudaMalloc'd
inline void free_pinned(void* p) noexcept { (void)cudaFreeHost(p); }  // cudaHostAlloc'd

}  // namespace mlp::cuda
