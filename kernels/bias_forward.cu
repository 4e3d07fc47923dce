// Bias forward (see bias_forward.cuh). One thread per element.
#include "kernels/bias_forward.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__global__ void bias_forward_kernel(float* __restrict__ z, const float* __restrict__ bias,
                                    int64_t n, int64_t cols) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  z[i] += bias[i % cols];
}

}  // namespace

void bias_forward(float* z, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  bias_forward_kernel<<<grid_for(n, kBiasForwardBlock), kBiasForwardBlock, 0, stream>>>(z, bias, n,
                                                                                        cols);
  MLP_CUDA_CHECK_LAUNCH("bias_forward_kernel");
}

}  // namespace mlp::kernels
