// Pointwise ops (see elementwise.cuh): one kernel template and a functor per
// op that says what element i becomes. Where the arrays are 16-byte aligned
// and the sizes allow, each thread handles four consecutive elements with one
// float4 (uchar4) load and store; otherwise one element. Index math is 32-bit
// when the element count fits, 64-bit beyond. Consecutive threads touch
// consecutive elements (and, for the bias ops, consecutive bias entries), so
// every access is coalesced. The arithmetic per element is the same in both
// widths (one IEEE operation), so results equal the CPU reference bitwise.
#include <cstdint>

#include "kernels/elementwise.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

__device__ __forceinline__ float u8_value(uint8_t x, bool binarize) {
  return binarize ? (x > 127 ? 1.0f : 0.0f) : static_cast<float>(x) * (1.0f / 255.0f);
}
// NaN passes through, as on the CPU: the loss must see it.
__device__ __forceinline__ float relu(float x) { return x <= 0.0f ? 0.0f : x; }

struct U8ToFloat {
  const uint8_t* __restrict__ in;
  float* __restrict__ out;
  bool binarize;
  template <class I>
  __device__ void operator()(I i) const {
    out[i] = u8_value(in[i], binarize);
  }
  template <class I>
  __device__ void vec4(I i) const {
    const uchar4 x = reinterpret_cast<const uchar4*>(in)[i];
    reinterpret_cast<float4*>(out)[i] =
        make_float4(u8_value(x.x, binarize), u8_value(x.y, binarize), u8_value(x.z, binarize),
                    u8_value(x.w, binarize));
  }
};

struct BiasRelu {
  float* __restrict__ z;
  const float* __restrict__ bias;
  int64_t cols;
  template <class I>
  __device__ void operator()(I i) const {
    z[i] = relu(z[i] + bias[i % static_cast<I>(cols)]);
  }
  // cols % 4 == 0 here, so four consecutive elements share a row.
  template <class I>
  __device__ void vec4(I i) const {
    float4 x = reinterpret_cast<float4*>(z)[i];
    const float4 b = reinterpret_cast<const float4*>(bias)[i % static_cast<I>(cols / 4)];
    x = make_float4(relu(x.x + b.x), relu(x.y + b.y), relu(x.z + b.z), relu(x.w + b.w));
    reinterpret_cast<float4*>(z)[i] = x;
  }
};

struct Bias {
  float* __restrict__ z;
  const float* __restrict__ bias;
  int64_t cols;
  template <class I>
  __device__ void operator()(I i) const {
    z[i] += bias[i % static_cast<I>(cols)];
  }
  template <class I>
  __device__ void vec4(I i) const {
    float4 x = reinterpret_cast<float4*>(z)[i];
    const float4 b = reinterpret_cast<const float4*>(bias)[i % static_cast<I>(cols / 4)];
    x = make_float4(x.x + b.x, x.y + b.y, x.z + b.z, x.w + b.w);
    reinterpret_cast<float4*>(z)[i] = x;
  }
};

struct ReluBackward {
  float* __restrict__ grad;
  const float* __restrict__ act;
  template <class I>
  __device__ void operator()(I i) const {
    if (!(act[i] > 0.0f)) grad[i] = 0.0f;
  }
  template <class I>
  __device__ void vec4(I i) const {
    const float4 a = reinterpret_cast<const float4*>(act)[i];
    float4 g = reinterpret_cast<float4*>(grad)[i];
    g = make_float4(a.x > 0.0f ? g.x : 0.0f, a.y > 0.0f ? g.y : 0.0f, a.z > 0.0f ? g.z : 0.0f,
                    a.w > 0.0f ? g.w : 0.0f);
    reinterpret_cast<float4*>(grad)[i] = g;
  }
};

// n: elements (kScalar) or groups of four (kVec4).
enum class Width { kScalar, kVec4 };

template <Width W, class I, class Op>
__global__ void __launch_bounds__(kElementwiseBlock) elementwise_kernel(I n, Op op) {
  const I i = static_cast<I>(blockIdx.x) * kElementwiseBlock + static_cast<I>(threadIdx.x);
  if (i >= n) return;
  if constexpr (W == Width::kVec4)
    op.vec4(i);
  else
    op(i);
}

template <Width W, class Op>
void launch_width(int64_t n, const Op& op, cudaStream_t stream) {
  const unsigned grid = grid_for(n, kElementwiseBlock);
  // + one block: the last block's unused threads compute indices past n.
  if (fits_int32(n + kElementwiseBlock))
    elementwise_kernel<W, int><<<grid, kElementwiseBlock, 0, stream>>>(static_cast<int>(n), op);
  else
    elementwise_kernel<W, int64_t><<<grid, kElementwiseBlock, 0, stream>>>(n, op);
  MLP_CUDA_CHECK_LAUNCH("elementwise_kernel");
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// vec4_ok: the op's pointers are 16-byte aligned and its shape allows groups of four.
template <class Op>
void launch(int64_t n, bool vec4_ok, const Op& op, cudaStream_t stream) {
  if (n <= 0) return;
  if (vec4_ok && n % 4 == 0)
    launch_width<Width::kVec4>(n / 4, op, stream);
  else
    launch_width<Width::kScalar>(n, op, stream);
}

}  // namespace

void u8_to_float(const uint8_t* in, float* out, int64_t n, bool binarize, cudaStream_t stream) {
  // uchar4 loads need 4-byte alignment of the input, float4 stores 16 of the output.
  const bool ok = reinterpret_cast<uintptr_t>(in) % 4 == 0 && aligned16(out);
  launch(n, ok, U8ToFloat{in, out, binarize}, stream);
}

void bias_relu_forward(float* z, const float* bias, int64_t rows, int64_t cols,
                       cudaStream_t stream) {
  const bool ok = cols % 4 == 0 && aligned16(z) && aligned16(bias);
  launch(rows * cols, ok, BiasRelu{z, bias, cols}, stream);
}

void bias_forward(float* z, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const bool ok = cols % 4 == 0 && aligned16(z) && aligned16(bias);
  launch(rows * cols, ok, Bias{z, bias, cols}, stream);
}

void relu_backward(float* grad, const float* act, int64_t n, cudaStream_t stream) {
  const bool ok = aligned16(grad) && aligned16(act);
  launch(n, ok, ReluBackward{grad, act}, stream);
}

}  // namespace mlp::kernels
