// Fused softmax + cross-entropy + argmax/correct count, one pass over the
// logits: per row, the max (and its FIRST index, as the CPU's argmax), the
// max-subtracted exp sum, the row loss log(sum) - (x[label] - max), and when
// dlogits is non-null d(mean loss)/d(logits) = (softmax - onehot) / rows.
// The loss sum and the correct count are ADDED to metrics[0] and metrics[1]
// (doubles) by one thread, in a fixed order: the result is deterministic.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mlp/optimizer.h"  // defines: OptimizerState

namespace mlp::kernels {

// One block; one warp per row (warps loop over the rows), at most this many
// threads. Rows of up to a few hundred classes fit a warp's registers easily.
inline constexpr int kSoftmaxXentMaxBlock = 1024;

// logits, dlogits: (rows, cols) row-major; labels: (rows); metrics: 2 doubles.
// A label >= cols makes that row's loss NaN (so training stops loudly) and
// never reads out of bounds.
void softmax_xent(const float* logits, const uint8_t* labels, float* dlogits, double* metrics,
                  int64_t rows, int64_t cols, cudaStream_t stream);

// ---- over many blocks: what the backend runs ---------------------------------------
// One warp per row, kSoftmaxXentWarps rows per block at a time, as many blocks
// as the rows need (at most kSoftmaxXentMaxBlocks, then blocks loop). Each
// block writes its partial loss, correct count and (for db) column sums to a
// workspace; the last block to finish (an integer atomic ticket) adds the
// partials in block order. Fixed order, no float atomics: the same inputs give
// the same bits on every run.
inline constexpr int kSoftmaxXentWarps = 8;
inline constexpr int kSoftmaxXentBlock = kSoftmaxXentWarps * 32;
inline constexpr int kSoftmaxXentMaxBlocks = 512;
inline constexpr int kSoftmaxXentMaxCols = 256;  // labels are uint8

// Device scratch for softmax_xent_grid, zero-filled once (the ticket resets
// itself). One per stream that runs the op: calls on one stream share it.
struct SoftmaxXentWorkspace {
  double* loss;        // kSoftmaxXentMaxBlocks
  long long* correct;  // kSoftmaxXentMaxBlocks
  float* db;           // kSoftmaxXentMaxBlocks * kSoftmaxXentMaxCols
  unsigned* ticket;    // 1
};
std::size_t softmax_xent_workspace_bytes();
// Carves the workspace out of `bytes` (from softmax_xent_workspace_bytes()) zeroed device bytes.
SoftmaxXentWorkspace softmax_xent_workspace(void* bytes);

// As softmax_xent, and: db (cols) = column sums of dlogits when non-null (needs
// dlogits); step_counter->step += 1 when non-null (Adam's counter, see
// Backend::softmax_xent_backward). cols <= kSoftmaxXentMaxCols.
void softmax_xent_grid(const float* logits, const uint8_t* labels, float* dlogits, float* db,
                       double* metrics, OptimizerState* step_counter, int64_t rows, int64_t cols,
                       const SoftmaxXentWorkspace& ws, cudaStream_t stream);

}  // namespace mlp::kernels
