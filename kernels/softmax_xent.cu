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

// Combines the lanes' (max, argmax) across the warp and hands every lane lane
// 0's: they agree already unless a logit is NaN, and this way they always do.
__device__ __forceinline__ void warp_max_argmax(float& mx, int& arg) {
  for (int off = kWarpSize / 2; off > 0; off /= 2)
    argmax_combine(mx, arg, __shfl_xor_sync(kFullMask, mx, off),
                   __shfl_xor_sync(kFullMask, arg, off));
  mx = __shfl_sync(kFullMask, mx, 0);
  arg = __shfl_sync(kFullMask, arg, 0);
}

// Lane 0 adds one row's loss and hit to its partials: -log softmax[label] =
// log(sum) - (x[label] - max), finite for huge logits; a label out of range
// gives a NaN loss and no hit.
__device__ __forceinline__ void add_row_loss(double& loss, long long& correct, const float* x,
                                             int label, int64_t cols, float mx, int arg,
                                             float sum) {
  const bool label_ok = label < cols;
  const float row_loss = label_ok ? logf(sum) - (x[label] - mx) : NAN;
  loss += static_cast<double>(row_loss);
  correct += (label_ok && arg == label) ? 1 : 0;
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
    warp_max_argmax(mx, arg);

    float sum = 0.0f;
    for (int64_t c = lane; c < cols; c += kWarpSize) sum += expf(x[c] - mx);
    for (int off = kWarpSize / 2; off > 0; off /= 2) sum += __shfl_xor_sync(kFullMask, sum, off);

    const int label = labels[r];
    if (lane == 0) add_row_loss(loss, correct, x, label, cols, mx, arg, sum);
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

// ---- over many blocks ------------------------------------------------------------------
namespace {

constexpr int kColsPerLane = kSoftmaxXentMaxCols / kWarpSize;  // 8 column slots per lane
// The block reduction gives each thread one column.
static_assert(kSoftmaxXentBlock == kSoftmaxXentMaxCols, "one thread per column");

__global__ void __launch_bounds__(kSoftmaxXentBlock)
    softmax_xent_grid_kernel(const float* __restrict__ logits, const uint8_t* __restrict__ labels,
                             float* __restrict__ dlogits, float* __restrict__ db,
                             double* __restrict__ metrics, OptimizerState* step_counter, int rows,
                             int cols, SoftmaxXentWorkspace ws) {
  __shared__ float warp_db[kSoftmaxXentWarps][kSoftmaxXentMaxCols];
  __shared__ double warp_loss[kSoftmaxXentWarps];
  __shared__ long long warp_correct[kSoftmaxXentWarps];
  __shared__ bool last_block;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int row_stride = static_cast<int>(gridDim.x) * kSoftmaxXentWarps;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  if (step_counter && blockIdx.x == 0 && threadIdx.x == 0) step_counter->step += 1;

  double loss = 0.0;  // lane 0's
  long long correct = 0;
  float col_sum[kColsPerLane];  // this lane's columns lane, lane + 32, ...
#pragma unroll
  for (int j = 0; j < kColsPerLane; ++j) col_sum[j] = 0.0f;

  // Warp-uniform row loop (r depends only on the warp): full-mask shuffles are safe.
  for (int r = static_cast<int>(blockIdx.x) * kSoftmaxXentWarps + warp; r < rows; r += row_stride) {
    const float* x = logits + r * cols;
    float xs[kColsPerLane];
    float mx = 0.0f;
    int arg = kNoIndex;
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) {
      const int c = lane + j * kWarpSize;
      xs[j] = c < cols ? x[c] : 0.0f;
      if (c < cols && (arg == kNoIndex || xs[j] > mx)) {
        mx = xs[j];
        arg = c;
      }
    }
    warp_max_argmax(mx, arg);

    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j)
      if (lane + j * kWarpSize < cols) sum += expf(xs[j] - mx);
    for (int off = kWarpSize / 2; off > 0; off /= 2) sum += __shfl_xor_sync(kFullMask, sum, off);

    const int label = labels[r];
    if (lane == 0) add_row_loss(loss, correct, x, label, cols, mx, arg, sum);
    if (dlogits) {
      float* d = dlogits + r * cols;
      const float inv_sum = 1.0f / sum;
#pragma unroll
      for (int j = 0; j < kColsPerLane; ++j) {
        const int c = lane + j * kWarpSize;
        if (c < cols) {
          const float dv = (expf(xs[j] - mx) * inv_sum - (c == label ? 1.0f : 0.0f)) * inv_rows;
          d[c] = dv;
          col_sum[j] += dv;
        }
      }
    }
  }

  // Block partials, in warp order.
  if (lane == 0) {
    warp_loss[warp] = loss;
    warp_correct[warp] = correct;
  }
  if (db) {
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) warp_db[warp][lane + j * kWarpSize] = col_sum[j];
  }
  __syncthreads();
  const int t = static_cast<int>(threadIdx.x);  // kSoftmaxXentBlock == kSoftmaxXentMaxCols
  if (db && t < cols) {
    float s = 0.0f;
    for (int w = 0; w < kSoftmaxXentWarps; ++w) s += warp_db[w][t];
    ws.db[blockIdx.x * kSoftmaxXentMaxCols + t] = s;
  }
  if (t == 0) {
    double l = 0.0;
    long long k = 0;
    for (int w = 0; w < kSoftmaxXentWarps; ++w) {
      l += warp_loss[w];
      k += warp_correct[w];
    }
    ws.loss[blockIdx.x] = l;
    ws.correct[blockIdx.x] = k;
  }
  // Every thread that wrote a partial makes it visible device-wide before the
  // block takes its ticket (the threadFenceReduction pattern).
  __threadfence();
  __syncthreads();
  if (t == 0) last_block = atomicAdd(ws.ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  // The last block: every partial is written; add them in block order.
  const int blocks = static_cast<int>(gridDim.x);
  if (db && t < cols) {
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b)
      s += static_cast<volatile const float*>(ws.db)[b * kSoftmaxXentMaxCols + t];
    db[t] = s;
  }
  if (t == 0) {
    double l = 0.0;
    long long k = 0;
    for (int b = 0; b < blocks; ++b) {
      l += static_cast<volatile const double*>(ws.loss)[b];
      k += static_cast<volatile const long long*>(ws.correct)[b];
    }
    metrics[0] += l;
    metrics[1] += static_cast<double>(k);
    *ws.ticket = 0;  // ready for the next launch on this stream
  }
}

}  // namespace

std::size_t softmax_xent_workspace_bytes() {
  return kSoftmaxXentMaxBlocks * (sizeof(double) + sizeof(long long)) +
         kSoftmaxXentMaxBlocks * kSoftmaxXentMaxCols * sizeof(float) + 16;
}

SoftmaxXentWorkspace softmax_xent_workspace(void* bytes) {
  auto* base = static_cast<char*>(bytes);
  SoftmaxXentWorkspace ws;
  ws.loss = reinterpret_cast<double*>(base);
  ws.correct = reinterpret_cast<long long*>(base + kSoftmaxXentMaxBlocks * sizeof(double));
  ws.db =
      reinterpret_cast<float*>(base + kSoftmaxXentMaxBlocks * (sizeof(double) + sizeof(long long)));
  ws.ticket = reinterpret_cast<unsigned*>(
      base + kSoftmaxXentMaxBlocks * (sizeof(double) + sizeof(long long)) +
      kSoftmaxXentMaxBlocks * kSoftmaxXentMaxCols * sizeof(float));
  return ws;
}

void softmax_xent_grid(const float* logits, const uint8_t* labels, float* dlogits, float* db,
                       double* metrics, OptimizerState* step_counter, int64_t rows, int64_t cols,
                       const SoftmaxXentWorkspace& ws, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (cols > kSoftmaxXentMaxCols || !fits_int32(rows * cols))
    throw Error(ExitCode::kDevice, "softmax_xent_grid: more than 256 classes or 2^31 logits");
  if (db && !dlogits) throw Error(ExitCode::kDevice, "softmax_xent_grid: db needs dlogits");
  const int64_t blocks = (rows + kSoftmaxXentWarps - 1) / kSoftmaxXentWarps;
  const unsigned grid =
      static_cast<unsigned>(blocks < kSoftmaxXentMaxBlocks ? blocks : kSoftmaxXentMaxBlocks);
  softmax_xent_grid_kernel<<<grid, kSoftmaxXentBlock, 0, stream>>>(
      logits, labels, dlogits, db, metrics, step_counter, static_cast<int>(rows),
      static_cast<int>(cols), ws);
  MLP_CUDA_CHECK_LAUNCH("softmax_xent_grid_kernel");
}

}  // namespace mlp::kernels
