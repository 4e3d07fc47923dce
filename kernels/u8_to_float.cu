// u8 -> float input conversion (see u8_to_float.cuh). One thread per pixel.
#include "kernels/launch.cuh"
#include "kernels/u8_to_float.cuh"

namespace mlp::kernels {
namespace {

__global__ void u8_to_float_kernel(const uint8_t* __restrict__ in, float* __restrict__ out,
                                   int64_t n, bool binarize) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t x = in[i];
  out[i] = binarize ? (x > 127 ? 1.0f : 0.0f) : static_cast<float>(x) * (1.0f / 255.0f);
}

}  // namespace

void u8_to_float(const uint8_t* in, float* out, int64_t n, bool binarize, cudaStream_t stream) {
  if (n <= 0) return;
  u8_to_float_kernel<<<grid_for(n, kU8ToFloatBlock), kU8ToFloatBlock, 0, stream>>>(in, out, n,
                                                                                   binarize);
  MLP_CUDA_CHECK_LAUNCH("u8_to_float_kernel");
}

}  // namespace mlp::kernels
