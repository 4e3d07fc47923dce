// Fused Adam (see adam.cuh).
//
// adam_step is two launches: every block of the update kernel reads the step
// counter, so it cannot also increment it without a grid-wide barrier. A
// one-thread kernel bumps the counter first; stream order makes the update see
// t = step. The step plan avoids that launch: its loss kernel advances the
// counter (softmax_xent_grid), and adam_update, one launch per layer, only reads it.
//
// Numerics match cpu::adam_step bit for bit on the same inputs: both take
// their two scalar factors from adam_factors() (double, rounded to float once)
// and the update uses round-to-nearest intrinsics (__fmul_rn, ...) so nvcc
// cannot contract a*b+c into an FMA; the CPU reference is compiled without
// contraction either (-ffp-contract=off).
#include "kernels/adam.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__global__ void adam_count_step_kernel(OptimizerState* state) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  state->step += 1;
}

// One element of the update, shared by the scalar and the float4 kernels.
__device__ __forceinline__ void adam_element(float& p, float g, float& m, float& v,
                                             const float* k) {
  const float step_size = k[0], inv_sqrt_bc2 = k[1], b1 = k[2], b2 = k[3], eps = k[4];
  const float mi = __fadd_rn(__fmul_rn(b1, m), __fmul_rn(__fsub_rn(1.0f, b1), g));
  const float vi = __fadd_rn(__fmul_rn(b2, v), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, b2), g), g));
  m = mi;
  v = vi;
  const float update =
      __fdiv_rn(__fmul_rn(step_size, mi), __fadd_rn(__fmul_rn(__fsqrt_rn(vi), inv_sqrt_bc2), eps));
  p = __fsub_rn(p, update);
}

// The scalars once per block, into shared memory: {step_size, 1/sqrt(bc2), b1, b2, eps}.
__device__ __forceinline__ void load_adam_scalars(const OptimizerState* state, float* k) {
  const OptimizerState st = *state;
  const AdamFactors f = adam_factors(st, st.step);
  k[0] = f.step_size;
  k[1] = f.inv_sqrt_bc2;
  k[2] = st.adam.beta1;
  k[3] = st.adam.beta2;
  k[4] = st.adam.eps;
}

// n4 groups of four floats; 32-bit indices (the launcher checks they fit).
__global__ void __launch_bounds__(kAdamBlock)
    adam_vec4_kernel(float4* __restrict__ params, const float4* __restrict__ grads,
                     float4* __restrict__ m, float4* __restrict__ v, int n4,
                     const OptimizerState* __restrict__ state) {
  __shared__ float k[5];
  if (threadIdx.x == 0) load_adam_scalars(state, k);
  __syncthreads();
  const int i = static_cast<int>(blockIdx.x) * kAdamBlock + static_cast<int>(threadIdx.x);
  if (i >= n4) return;
  float4 p = params[i], mm = m[i], vv = v[i];
  const float4 g = grads[i];
  adam_element(p.x, g.x, mm.x, vv.x, k);
  adam_element(p.y, g.y, mm.y, vv.y, k);
  adam_element(p.z, g.z, mm.z, vv.z, k);
  adam_element(p.w, g.w, mm.w, vv.w, k);
  params[i] = p;
  m[i] = mm;
  v[i] = vv;
}

__global__ void __launch_bounds__(kAdamBlock)
    adam_kernel(float* __restrict__ params, const float* __restrict__ grads, float* __restrict__ m,
                float* __restrict__ v, int64_t n, const OptimizerState* __restrict__ state) {
  __shared__ float k[5];
  if (threadIdx.x == 0) load_adam_scalars(state, k);
  // Every thread must reach the barrier, so the bounds check comes after it.
  __syncthreads();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float p = params[i], mi = m[i], vi = v[i];
  adam_element(p, grads[i], mi, vi, k);
  params[i] = p;
  m[i] = mi;
  v[i] = vi;
}

}  // namespace

void adam_update(float* params, const float* grads, float* m, float* v, int64_t n,
                 const OptimizerState* state, cudaStream_t stream) {
  if (n <= 0) return;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (n % 4 == 0 && fits_int32(n) && aligned(params) && aligned(grads) && aligned(m) &&
      aligned(v)) {
    adam_vec4_kernel<<<grid_for(n / 4, kAdamBlock), kAdamBlock, 0, stream>>>(
        reinterpret_cast<float4*>(params), reinterpret_cast<const float4*>(grads),
        reinterpret_cast<float4*>(m), reinterpret_cast<float4*>(v), static_cast<int>(n / 4), state);
    MLP_CUDA_CHECK_LAUNCH("adam_vec4_kernel");
    return;
  }
  adam_kernel<<<grid_for(n, kAdamBlock), kAdamBlock, 0, stream>>>(params, grads, m, v, n, state);
  MLP_CUDA_CHECK_LAUNCH("adam_kernel");
}

void adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
               OptimizerState* state, cudaStream_t stream) {
  if (n <= 0) return;
  adam_count_step_kernel<<<1, 1, 0, stream>>>(state);
  MLP_CUDA_CHECK_LAUNCH("adam_count_step_kernel");
  adam_kernel<<<grid_for(n, kAdamBlock), kAdamBlock, 0, stream>>>(params, grads, m, v, n, state);
  MLP_CUDA_CHECK_LAUNCH("adam_kernel");
}

}  // namespace mlp::kernels
