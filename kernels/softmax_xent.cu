// Fused softmax cross-entropy (see softmax_xent.cuh). Layout: one block of up
// to 1024 threads; warp w handles rows w, w + warps, ...; lane l handles the
// row's columns l, l + 32, ...; butterfly shuffles combine the lanes, so every
// lane ends up with the row's max, argmax and exp sum. Per-warp partial loss
// and correct counts go to shared memory and thread 0 adds them in warp order:
// no atomics, so the same inputs give the same bits on every run.
#include <cmath>

#include "kernels/launch.cuh"
#include "kernels/softmax_xent.cuh"

namespace mlp::kernels {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kNoIndex = 0x7fffffff;  // "this lane saw no column"

// (v, i) becomes the larger of (v, i) and (ov, oi); on equal values the
// smaller index wins, which makes the result the FIRST maximum like the CPU.
__device__ __forceinline__ void argmax_combine(float& v, int& i, float ov, int oi) {
  if (oi != kNoIndex && (i == kNoIndex || ov > v || (ov == v && oi < i))) {
    v = ov;
    i = oi;
  }
}

// Bounded for the largest block it is launched with: without it a -G debug build
// needs more registers per thread than a 1024-thread block can have.
__global__ void __launch_bounds__(kSoftmaxXentMaxBlock)
    softmax_xent_kernel(const float* __restrict__ logits, const uint8_t* __restrict__ labels,
                        float* __restrict__ dlogits, double* __restrict__ metrics, int64_t rows,
                        int64_t cols) {
  __shared__ double warp_loss[kSoftmaxXentMaxBlock / kWarpSize];
  __shared__ long long warp_correct[kSoftmaxXentMaxBlock / kWarpSize];
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int warps = static_cast<int>(blockDim.x) / kWarpSize;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  double loss = 0.0;      // meaningful in lane 0 only
  long long correct = 0;  // meaningful in lane 0 only

  // The row loop is warp-uniform (r depends only on the warp), so all 32
  // lanes stay converged for the full-mask shuffles below. Rows past the end
  // are never visited; there is no per-thread early return because thread 0
  // must still reach the block reduction.
  for (int64_t r = warp; r < rows; r += warps) {
    const float* x = logits + r * cols;
    float mx = 0.0f;
    int arg = kNoIndex;
    for (int64_t c = lane; c < cols; c += kWarpSize)
      if (arg == kNoIndex || x[c] > mx) {
        mx = x[c];
        arg = static_cast<int>(c);
      }
    for (int off = kWarpSize / 2; off > 0; off /= 2)
      argmax_combine(mx, arg, __shfl_xor_sync(kFullMask, mx, off),
                     __shfl_xor_sync(kFullMask, arg, off));
    // Lanes agree already unless a logit is NaN; take lane 0's so they always do.
    mx = __shfl_sync(kFullMask, mx, 0);
    arg = __shfl_sync(kFullMask, arg, 0);

    float sum = 0.0f;
    for (int64_t c = lane; c < cols; c += kWarpSize) sum += expf(x[c] - mx);
    for (int off = kWarpSize / 2; off > 0; off /= 2) sum += __shfl_xor_sync(kFullMask, sum, off);

    const int label = labels[r];
    const bool label_ok = label < cols;
    if (lane == 0) {
      // -log softmax[label] = log(sum) - (x[label] - max): finite for huge logits.
      const float row_loss = label_ok ? logf(sum) - (x[label] - mx) : NAN;
      loss += static_cast<double>(row_loss);
      correct += (label_ok && arg == label) ? 1 : 0;
    }
    if (dlogits) {
      float* d = dlogits + r * cols;
      const float inv_sum = 1.0f / sum;
      for (int64_t c = lane; c < cols; c += kWarpSize)
        d[c] = (expf(x[c] - mx) * inv_sum - (c == label ? 1.0f : 0.0f)) * inv_rows;
    }
  }

  if (lane == 0) {
    warp_loss[warp] = loss;
    warp_correct[warp] = correct;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total_loss = 0.0;
  long long total_correct = 0;
  for (int w = 0; w < warps; ++w) {
    total_loss += warp_loss[w];
    total_correct += warp_correct[w];
  }
  metrics[0] += total_loss;
  metrics[1] += static_cast<double>(total_correct);
}

}  // namespace

void softmax_xent(const float* logits, const uint8_t* labels, float* dlogits, double* metrics,
                  int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  // One warp per row up to the block limit; a multiple of 32 so no warp is partial.
  const int64_t threads =
      rows * kWarpSize < kSoftmaxXentMaxBlock ? rows * kWarpSize : kSoftmaxXentMaxBlock;
  softmax_xent_kernel<<<1, static_cast<unsigned>(threads), 0, stream>>>(logits, labels, dlogits,
                                                                        metrics, rows, cols);
  MLP_CUDA_CHECK_LAUNCH("softmax_xent_kernel");
}

}  // namespace mlp::kernels
