// CUDA memory for mlp::Buffer: allocation (zero-filled, with messages that
// name the bytes needed and free) and the free functions a Buffer calls. A
// Buffer is the RAII owner (move-only, noexcept moves); the free functions
// must never throw, and they ignore errors: at teardown, or after a sticky
// kernel fault, there is nobody left to report a failed free to.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace mlp::cuda {

// cudaMalloc'd device memory on `device`, zeroed (synchronously) on `stream`;
// out of memory throws Error(kDevice) with the bytes needed and free.
void* alloc_device_zeroed(int device, std::size_t bytes, cudaStream_t stream);
// cudaHostAlloc'd (pinned) host memory, zeroed.
void* alloc_pinned_zeroed(std::size_t bytes);

inline void free_device(void* p) noexcept { (void)cudaFree(p); }      // cudaMalloc'd
inline void free_pinned(void* p) noexcept { (void)cudaFreeHost(p); }  // cudaHostAlloc'd

}  // namespace mlp::cuda
