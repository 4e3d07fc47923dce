// Pointwise ops (see elementwise.cuh): one kernel template, one thread per
// element, and a functor per op that says what element i becomes. Consecutive
// threads touch consecutive elements (and, for the bias ops, consecutive bias
// entries), so every access is coalesced.
#include "kernels/elementwise.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

struct U8ToFloat {
  const uint8_t* __restrict__ in;
  float* __restrict__ out;
  bool binarize;
  __device__ void operator()(int64_t i) const {
    const uint8_t x = in[i];
    out[i] = binarize ? (x > 127 ? 1.0f : 0.0f) : static_cast<float>(x) * (1.0f / 255.0f);
  }
};

struct BiasRelu {
  float* __restrict__ z;
  const float* __restrict__ bias;
  int64_t cols;
  __device__ void operator()(int64_t i) const {
    const float x = z[i] + bias[i % cols];
    z[i] = x <= 0.0f ? 0.0f : x;  // NaN passes through, as on the CPU: the loss must see it
  }
};

struct Bias {
  float* __restrict__ z;
  const float* __restrict__ bias;
  int64_t cols;
  __device__ void operator()(int64_t i) const { z[i] += bias[i % cols]; }
};

struct ReluBackward {
  float* __restrict__ grad;
  const float* __restrict__ act;
  __device__ void operator()(int64_t i) const {
    if (!(act[i] > 0.0f)) grad[i] = 0.0f;
  }
};

template <class Op>
__global__ void __launch_bounds__(kElementwiseBlock) elementwise_kernel(int64_t n, Op op) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  op(i);
}

template <class Op>
void launch(int64_t n, const Op& op, cudaStream_t stream) {
  if (n <= 0) return;
  elementwise_kernel<<<grid_for(n, kElementwiseBlock), kElementwiseBlock, 0, stream>>>(n, op);
  MLP_CUDA_CHECK_LAUNCH("elementwise_kernel");
}

}  // namespace

void u8_to_float(const uint8_t* in, float* out, int64_t n, bool binarize, cudaStream_t stream) {
  launch(n, U8ToFloat{in, out, binarize}, stream);
}

void bias_relu_forward(float* z, const float* bias, int64_t rows, int64_t cols,
                       cudaStream_t stream) {
  launch(rows * cols, BiasRelu{z, bias, cols}, stream);
}

void bias_forward(float* z, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  launch(rows * cols, Bias{z, bias, cols}, stream);
}

void relu_backward(float* grad, const float* act, int64_t n, cudaStream_t stream) {
  launch(n, ReluBackward{grad, act}, stream);
}

}  // namespace mlp::kernels
