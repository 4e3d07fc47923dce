// Fused softmax + cross-entropy + argmax/correct count, one pass over the
// logits: per row, the max (and its FIRST index, as the CPU's argmax), the
// max-subtracted exp sum, the row loss log(sum) - (x[label] - max), and when
// dlogits is non-null d(mean loss)/d(logits) = (softmax - onehot) / rows.
// The loss sum and the correct count are ADDED to metrics[0] and metrics[1]
// (doubles) by one thread, in a fixed order: the result is deterministic.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::kernels {

// One block; one warp per row (warps loop over the rows), at most this many
// threads. Rows of up to a few hundred classes fit a warp's registers easily.
inline constexpr int kSoftmaxXentMaxBlock = 1024;

// logits, dlogits: (rows, cols) row-major; labels: (rows); metrics: 2 doubles.
// A label >= cols makes that row's loss NaN (so training stops loudly) and
// never reads out of bounds.
void softmax_xent(const float* logits, const uint8_t* labels, float* dlogits, double* metrics,
                  int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace mlp::kernels
