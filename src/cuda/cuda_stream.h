// The CUDA backend's compute stream, for the GPU tests and benchmarks that must
// queue work of their own (a spin kernel of known duration, say) in the
// backend's issue order. Nothing in the product uses it: ops stay behind the
// Backend seam.
#pragma once

#include <cuda_runtime_api.h>

#include "mlp/backend.h"

namespace mlp::cuda {

// The stream every op, memset and replay of `backend` runs on. Throws
// Error(kFailure) when `backend` is not a CUDA backend.
cudaStream_t compute_stream(Backend& backend);
// The captured CUDA graph behind `graph` (from a CUDA backend's capture()), for
// tests that check its nodes and edges. Throws Error(kFailure) otherwise.
cudaGraph_t graph_handle(Graph& graph);

}  // namespace mlp::cuda
