// Fused Adam (see adam.cuh).
//
// Why two launches: every block of the update kernel reads the step counter,
// so it cannot also increment it without a grid-wide barrier. A one-thread
// kernel bumps the counter first; stream order makes the update see t = *step.
// The extra launch costs ~2 us eagerly and less inside a graph.
//
// Numerics match cpu::adam_step bit for bit on the same inputs: the bias
// corrections are computed in double and rounded to float once, exactly as on
// the CPU, and the update uses round-to-nearest intrinsics (__fmul_rn, ...)
// so nvcc cannot contract a*b+c into an FMA, which the x86-64 CPU build does
// not do either.
#include "kernels/adam.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__global__ void adam_count_step_kernel(int64_t* step) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  *step += 1;
}

__global__ void adam_kernel(float* __restrict__ params, const float* __restrict__ grads,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, float lr,
                            float b1, float b2, float one_minus_b1, float one_minus_b2, float eps,
                            const int64_t* __restrict__ step) {
  // PyTorch's form, as cpu::adam_step: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
  // The two scalars once per block, in double, rounded to float once (as on the CPU).
  __shared__ float scale[2];  // {lr / bc1, 1 / sqrt(bc2)}
  if (threadIdx.x == 0) {
    const double t = static_cast<double>(*step);
    const double bc1 = 1.0 - pow(static_cast<double>(b1), t);
    const double bc2 = 1.0 - pow(static_cast<double>(b2), t);
    scale[0] = static_cast<float>(static_cast<double>(lr) / bc1);
    scale[1] = static_cast<float>(1.0 / sqrt(bc2));
  }
  // Every thread must reach the barrier, so the bounds check comes after it.
  __syncthreads();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float step_size = scale[0];
  const float inv_sqrt_bc2 = scale[1];
  const float g = grads[i];
  const float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(one_minus_b1, g));
  const float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(one_minus_b2, g), g));
  m[i] = mi;
  v[i] = vi;
  const float update =
      __fdiv_rn(__fmul_rn(step_size, mi), __fadd_rn(__fmul_rn(__fsqrt_rn(vi), inv_sqrt_bc2), eps));
  params[i] = __fsub_rn(params[i], update);
}

}  // namespace

void adam_step(float* params, const float* grads, float* m, float* v, int64_t n, const AdamHyper& h,
               int64_t* step, cudaStream_t stream) {
  if (n <= 0) return;
  adam_count_step_kernel<<<1, 1, 0, stream>>>(step);
  MLP_CUDA_CHECK_LAUNCH("adam_count_step_kernel");
  adam_kernel<<<grid_for(n, kAdamBlock), kAdamBlock, 0, stream>>>(
      params, grads, m, v, n, h.lr, h.beta1, h.beta2, 1.0f - h.beta1, 1.0f - h.beta2, h.eps, step);
  MLP_CUDA_CHECK_LAUNCH("adam_kernel");
}

}  // namespace mlp::kernels
