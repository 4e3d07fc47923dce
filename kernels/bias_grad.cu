// Bias gradient (see bias_grad.cuh). Block (32, 16): thread (x, y) sums rows
// y, y+16, ... of column blockIdx.x*32 + x; the 16 partial sums of a column
// are then added in row-lane order by the y == 0 thread. The summation order
// depends only on the shape, so results are reproducible run to run.
#include "kernels/bias_grad.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__global__ void __launch_bounds__(kBiasGradCols* kBiasGradRows)
    bias_grad_kernel(const float* __restrict__ grad, float* __restrict__ db, int64_t rows,
                     int64_t cols) {
  __shared__ float partial[kBiasGradRows][kBiasGradCols];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBiasGradCols + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kBiasGradRows) s += grad[r * cols + c];
  partial[threadIdx.y][threadIdx.x] = s;
  // Every thread must reach the barrier, so the bounds check comes after it.
  __syncthreads();
  if (c >= cols || threadIdx.y != 0) return;
  float total = 0.0f;
  for (int k = 0; k < kBiasGradRows; ++k) total += partial[k][threadIdx.x];
  db[c] = total;
}

}  // namespace

void bias_grad(const float* grad, float* db, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kBiasGradCols, kBiasGradRows);
  bias_grad_kernel<<<grid_for(cols, kBiasGradCols), block, 0, stream>>>(grad, db, rows, cols);
  MLP_CUDA_CHECK_LAUNCH("bias_grad_kernel");
}

}  // namespace mlp::kernels
