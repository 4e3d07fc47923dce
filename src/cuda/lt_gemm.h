// The optional cuBLASLt route (`--gemm lt`): a layer's forward GEMM with its
// bias (and ReLU) applied in the GEMM's epilogue (CUBLASLT_EPILOGUE_RELU_BIAS,
// CUBLASLT_EPILOGUE_BIAS), so the forward pass is one launch per layer instead
// of two. Whether cuBLASLt has an algorithm for a shape with that epilogue in
// FP32 (or TF32) is asked of its heuristics at run time, once per shape; when
// it has none, run() returns false and the caller falls back to cuBLAS + the
// bias kernel (a message says so once per shape and alignment). The backward
// pass keeps the custom ReLU-backward + bias-gradient kernel: DRELU_BGRAD needs
// the forward's ReLU bitmask (RELU_AUX_BIAS), which this route does not keep.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

namespace mlp::cuda {

class LtGemm {
 public:
  LtGemm(bool tf32, void* workspace, std::size_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Row-major out (m, n) = act(x (m, k) * w (k, n) + bias (n)), act = ReLU when
  // relu, else identity. False (nothing issued) when cuBLASLt has no algorithm.
  bool run(const float* x, const float* w, const float* bias, float* out, int m, int n, int k,
           bool relu, cudaStream_t stream);

 private:
  struct Plan {
    bool ok = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  // What a plan is chosen for: the shape, the epilogue, and the alignment in
  // bytes (up to 256) of w, x and out, which cuBLASLt's heuristics must be told.
  using Key = std::tuple<int, int, int, bool, uint32_t, uint32_t, uint32_t>;
  Plan& plan_for(const Key& key);

  bool tf32_;
  void* workspace_;
  std::size_t workspace_bytes_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, Plan> plans_;
};

}  // namespace mlp::cuda
