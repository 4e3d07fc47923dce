// ReLU backward (see relu_backward.cuh). One thread per element.
#include "kernels/launch.cuh"
#include "kernels/relu_backward.cuh"

namespace mlp::kernels {
namespace {

__global__ void relu_backward_kernel(float* __restrict__ grad, const float* __restrict__ act,
                                     int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (!(act[i] > 0.0f)) grad[i] = 0.0f;
}

}  // namespace

void relu_backward(float* grad, const float* act, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  relu_backward_kernel<<<grid_for(n, kReluBackwardBlock), kReluBackwardBlock, 0, stream>>>(grad,
                                                                                           act, n);
  MLP_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

}  // namespace mlp::kernels
