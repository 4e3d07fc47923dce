// Fused bias + ReLU forward (see bias_relu_forward.cuh). One thread per
// element; the column index is i % cols, so consecutive threads read
// consecutive z and bias entries (coalesced).
#include "kernels/bias_relu_forward.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__global__ void bias_relu_forward_kernel(float* __restrict__ z, const float* __restrict__ bias,
                                         int64_t n, int64_t cols) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = z[i] + bias[i % cols];
  z[i] = x <= 0.0f ? 0.0f : x;  // NaN passes through, as on the CPU: the loss must see it
}

}  // namespace

void bias_relu_forward(float* z, const float* bias, int64_t rows, int64_t cols,
                       cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  bias_relu_forward_kernel<<<grid_for(n, kBiasReluBlock), kBiasReluBlock, 0, stream>>>(z, bias, n,
                                                                                       cols);
  MLP_CUDA_CHECK_LAUNCH("bias_relu_forward_kernel");
}

}  // namespace mlp::kernels
