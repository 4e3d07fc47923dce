// See cuda_memory.h.
#include "cuda/cuda_memory.h"

#include <fmt/format.h>

#include <cstring>

#include "cuda/cublas_check.h"  // defines: MLP_CUDA_CHECK, throw_device_error, cuda_error_text
#include "mlp/error.h"

namespace mlp::cuda {
namespace {

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

void* alloc_device_zeroed(int device, std::size_t bytes, cudaStream_t stream) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    std::size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error(
        ExitCode::kDevice,
        fmt::format("out of GPU memory on device {}: cudaMalloc needed {} bytes "
                    "({:.1f} MiB) but only {} bytes ({:.1f} MiB) of {:.1f} MiB are free",
                    device, bytes, mib(bytes), free_bytes, mib(free_bytes), mib(total_bytes)));
  }
  if (e != cudaSuccess)
    throw_device_error("CUDA", "cudaMalloc(&p, bytes)", __func__, __FILE__, __LINE__,
                       cuda_error_text(e));
  try {
    // Zero-filled as the Backend seam promises. Synchronous, so that a later copy on
    // the copy stream can never race with this memset on the compute stream.
    MLP_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
    MLP_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    free_device(p);
    throw;
  }
  return p;
}

void* alloc_pinned_zeroed(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(ExitCode::kDevice,
                fmt::format("cudaHostAlloc of {} bytes ({:.1f} MiB) of pinned host memory "
                            "failed: {} ({})",
                            bytes, mib(bytes), cudaGetErrorString(e), cudaGetErrorName(e)));
  }
  std::memset(p, 0, bytes);
  return p;
}

}  // namespace mlp::cuda
