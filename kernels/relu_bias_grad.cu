// ReLU backward + bias gradient (see relu_bias_grad.cuh). The bias_grad kernel's
// layout with the mask applied on the way: thread (x, y) masks and sums rows
// y, y+16, ... of column blockIdx.x*32 + x, writes the masked values back, and
// the 16 partial sums of a column are added in row-lane order by the y == 0
// thread. Index math in 32 bits when the matrix allows it.
#include "kernels/launch.cuh"
#include "kernels/relu_bias_grad.cuh"

namespace mlp::kernels {
namespace {

template <class Index>
__global__ void __launch_bounds__(kReluBiasGradCols* kReluBiasGradRows)
    relu_bias_grad_kernel(float* __restrict__ grad, const float* __restrict__ act,
                          float* __restrict__ db, Index rows, Index cols) {
  __shared__ float partial[kReluBiasGradRows][kReluBiasGradCols];
  const Index c = static_cast<Index>(blockIdx.x) * kReluBiasGradCols + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (Index r = threadIdx.y; r < rows; r += kReluBiasGradRows) {
      const Index i = r * cols + c;
      // !(a > 0) also zeroes where the activation is NaN, as the CPU's select does.
      const float g = act[i] > 0.0f ? grad[i] : 0.0f;
      grad[i] = g;
      s += g;
    }
  partial[threadIdx.y][threadIdx.x] = s;
  // Every thread must reach the barrier, so the bounds check comes after it.
  __syncthreads();
  if (c >= cols || threadIdx.y != 0) return;
  float total = 0.0f;
  for (int k = 0; k < kReluBiasGradRows; ++k) total += partial[k][threadIdx.x];
  db[c] = total;
}

}  // namespace

void relu_backward_bias_grad(float* grad, const float* act, float* db, int64_t rows, int64_t cols,
                             cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kReluBiasGradCols, kReluBiasGradRows);
  const unsigned grid = grid_for(cols, kReluBiasGradCols);
  if (fits_int32(rows * cols + kReluBiasGradCols))
    relu_bias_grad_kernel<int>
        <<<grid, block, 0, stream>>>(grad, act, db, static_cast<int>(rows), static_cast<int>(cols));
  else
    relu_bias_grad_kernel<int64_t><<<grid, block, 0, stream>>>(grad, act, db, rows, cols);
  MLP_CUDA_CHECK_LAUNCH("relu_bias_grad_kernel");
}

}  // namespace mlp::kernels
