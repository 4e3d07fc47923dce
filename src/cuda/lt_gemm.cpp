// LtGemm (see lt_gemm.h). Row-major out = x * w is column-major
// out^T (n x m) = w^T (n x k) * x^T (k x m): the row-major buffers already are
// those column-major matrices, so A = w (lda n), B = x (ldb k), D = out (ldd n),
// no transposes, and the bias (length n = rows of D) is broadcast over the
// batch's columns, as cuBLASLt's BIAS epilogues define it.
#include "cuda/lt_gemm.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <utility>

#include "cuda/cublas_check.h"  // defines: MLP_CUBLAS_CHECK, cublas()

namespace mlp::cuda {
namespace {

// The largest power of two up to 256 that divides the address. cuBLASLt's
// heuristics assume 256-byte aligned matrices unless told otherwise
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, default 256), and may then pick
// a kernel that refuses, or misreads, the flat parameter buffer's tensors,
// which start on 64-byte boundaries only (include/mlp/tensor_align.h).
uint32_t alignment_bytes(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && address % align != 0) align /= 2;
  return align;
}

}  // namespace

LtGemm::LtGemm(bool tf32, void* workspace, std::size_t workspace_bytes)
    : tf32_(tf32), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  MLP_CUBLAS_CHECK(cublas().cublasLtCreate(&handle_));
}

LtGemm::~LtGemm() {
  const CublasApi& api = cublas();
  for (auto& [key, p] : plans_) {
    if (p.desc) (void)api.cublasLtMatmulDescDestroy(p.desc);
    for (cublasLtMatrixLayout_t l : {p.a, p.b, p.d})
      if (l) (void)api.cublasLtMatrixLayoutDestroy(l);
  }
  if (handle_) (void)api.cublasLtDestroy(handle_);
}

LtGemm::Plan& LtGemm::plan_for(const Key& key) {
  const auto [m, n, k, relu, align_w, align_x, align_out] = key;
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan& p = plans_[key];
  const CublasApi& api = cublas();
  MLP_CUBLAS_CHECK(api.cublasLtMatmulDescCreate(
      &p.desc, tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasLtEpilogue_t epilogue = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  MLP_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epilogue, sizeof(epilogue)));
  MLP_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, n, k, n));
  MLP_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, k, m, k));
  MLP_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p.d, CUDA_R_32F, n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  MLP_CUBLAS_CHECK(api.cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes_;
  bool prefs_set =
      api.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof(ws)) == CUBLAS_STATUS_SUCCESS;
  // A is w, B is x, C and D are out (see the top of this file).
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_out},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_out}};
  for (const auto& [attribute, bytes] : alignments)
    prefs_set = prefs_set && api.cublasLtMatmulPreferenceSetAttribute(
                                 pref, attribute, &bytes, sizeof(bytes)) == CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = prefs_set
                                ? api.cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.d,
                                                                     p.d, pref, 1, &result, &found)
                                : CUBLAS_STATUS_NOT_SUPPORTED;
  (void)api.cublasLtMatmulPreferenceDestroy(pref);
  p.ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p.ok)
    p.algo = result.algo;
  else
    std::fprintf(stderr,
                 "mnist-mlp: --gemm lt: cuBLASLt has no %s algorithm with the %s epilogue for "
                 "%dx%dx%d (w, x, out aligned to %u, %u, %u bytes); this layer uses cuBLAS + the "
                 "bias kernel\n",
                 tf32_ ? "TF32" : "FP32", relu ? "bias+ReLU" : "bias", m, n, k, align_w, align_x,
                 align_out);
  return p;
}

bool LtGemm::run(const float* x, const float* w, const float* bias, float* out, int m, int n, int k,
                 bool relu, cudaStream_t stream) {
  Plan& p =
      plan_for(Key{m, n, k, relu, alignment_bytes(w), alignment_bytes(x), alignment_bytes(out)});
  if (!p.ok) return false;
  const CublasApi& api = cublas();
  // The bias pointer is a host-side attribute of the descriptor: set per call.
  const void* b = bias;
  MLP_CUBLAS_CHECK(
      api.cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof(b)));
  const float one = 1.0f, zero = 0.0f;
  MLP_CUBLAS_CHECK(api.cublasLtMatmul(handle_, p.desc, &one, w, p.a, x, p.b, &zero, out, p.d, out,
                                      p.d, &p.algo, workspace_, workspace_bytes_, stream));
  return true;
}

}  // namespace mlp::cuda
