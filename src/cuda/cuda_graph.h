// CUDA Graphs for the backend: a training step captured once from the compute
// stream and replayed with one launch. The Graph object owns the graph and
// its executable instance.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <memory>

#include "mlp/backend.h"

namespace mlp::cuda {

// Captures everything `step` issues on `stream` (ThreadLocal mode) and
// instantiates it. If `step` throws, the capture is ended and discarded and
// the exception goes on; a failed capture or instantiation throws Error.
std::unique_ptr<Graph> capture_graph(cudaStream_t stream, const std::function<void()>& step);
// Launches a graph capture_graph made on `stream`.
void launch_graph(Graph& graph, cudaStream_t stream);

}  // namespace mlp::cuda
