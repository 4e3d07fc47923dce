// See cuda_graph.h.
#include "cuda/cuda_graph.h"

#include "cuda/cublas_check.h"  // defines: MLP_CUDA_CHECK
#include "cuda/cuda_stream.h"   // declares: graph_handle (for tests)
#include "mlp/error.h"

namespace mlp::cuda {
namespace {

class CudaGraph final : public Graph {
 public:
  ~CudaGraph() override {
    // Never throws; errors at teardown have nobody left to report them to.
    if (exec) (void)cudaGraphExecDestroy(exec);
    if (graph) (void)cudaGraphDestroy(graph);
  }
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

CudaGraph& as_cuda_graph(Graph& graph, const char* caller) {
  auto* g = dynamic_cast<CudaGraph*>(&graph);
  if (!g)
    throw Error(ExitCode::kFailure,
                std::string(caller) + ": graph was not captured by a CUDA backend");
  return *g;
}

}  // namespace

std::unique_ptr<Graph> capture_graph(cudaStream_t stream, const std::function<void()>& step) {
  // ThreadLocal: only this thread's unsafe calls (syncs, mallocs) break the
  // capture. The BatchStream loader thread may be in cudaEventSynchronize
  // meanwhile, which Global mode would turn into an error.
  MLP_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    step();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    (void)cudaStreamEndCapture(stream, &broken);
    if (broken) (void)cudaGraphDestroy(broken);
    (void)cudaGetLastError();
    throw;
  }
  auto g = std::make_unique<CudaGraph>();
  MLP_CUDA_CHECK(cudaStreamEndCapture(stream, &g->graph));
  MLP_CUDA_CHECK(cudaGraphInstantiate(&g->exec, g->graph, 0));
  return g;
}

void launch_graph(Graph& graph, cudaStream_t stream) {
  MLP_CUDA_CHECK(cudaGraphLaunch(as_cuda_graph(graph, "replay").exec, stream));
}

cudaGraph_t graph_handle(Graph& graph) { return as_cuda_graph(graph, "graph_handle").graph; }

}  // namespace mlp::cuda
