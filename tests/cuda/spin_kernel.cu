// The spin kernel (see spin_kernel.cuh). clock64() counts the SM's cycles at
// whatever clock it runs, never faster than the peak that cudaDevAttrClockRate
// reports, so `cycles >= min_ms * peak_khz` guarantees the minimum duration
// whatever the clocks do. %globaltimer is read only to report the real time.
#include <cmath>

#include "kernels/cuda_check.cuh"  // defines: MLP_CUDA_CHECK, MLP_CUDA_CHECK_LAUNCH
#include "tests/cuda/spin_kernel.cuh"

namespace mlp::cuda_testing {
namespace {

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spin_kernel(long long min_cycles, double min_ms, SpinResult* result) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const long long c0 = clock64();
  const uint64_t t0 = global_ns();
  long long c = c0;
  while (c - c0 < min_cycles) c = clock64();
  if (result) {
    result->cycles = static_cast<uint64_t>(c - c0);
    result->global_ns = global_ns() - t0;
    result->min_ms = min_ms;
  }
}

}  // namespace

void spin_for(double min_ms, cudaStream_t stream, SpinResult* result) {
  int device = 0, peak_khz = 0;
  MLP_CUDA_CHECK(cudaGetDevice(&device));
  MLP_CUDA_CHECK(cudaDeviceGetAttribute(&peak_khz, cudaDevAttrClockRate, device));
  const auto cycles = static_cast<long long>(std::ceil(min_ms * peak_khz));
  spin_kernel<<<1, 1, 0, stream>>>(cycles, min_ms, result);
  MLP_CUDA_CHECK_LAUNCH("spin_kernel");
}

}  // namespace mlp::cuda_testing
