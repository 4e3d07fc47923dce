// cuBLAS and cuBLASLt, loaded at run time. mnist-mlp links neither: the first
// CUDA backend (or `info`) dlopens libcublas and libcublasLt, so the same binary
// starts, trains on the CPU and says what is missing on a machine without the
// CUDA libraries. Every call goes through the table, e.g. cublas().cublasSgemm(...)
// (cublas_v2.h maps cublasSgemm to the cublasSgemm_v2 member, as it does for
// the functions themselves). Add a function to the lists to use it.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <string>

// clang-format off
#define MLP_CUBLAS_FUNCTIONS(X) \
  X(cublasCreate_v2)            \
  X(cublasDestroy_v2)           \
  X(cublasSetStream_v2)         \
  X(cublasSetWorkspace_v2)      \
  X(cublasSetMathMode)          \
  X(cublasSgemm_v2)             \
  X(cublasGetVersion_v2)        \
  X(cublasGetProperty)          \
  X(cublasGetStatusName)        \
  X(cublasGetStatusString)

#define MLP_CUBLASLT_FUNCTIONS(X)          \
  X(cublasLtCreate)                        \
  X(cublasLtDestroy)                       \
  X(cublasLtGetVersion)                    \
  X(cublasLtMatmul)                        \
  X(cublasLtMatmulDescCreate)              \
  X(cublasLtMatmulDescDestroy)             \
  X(cublasLtMatmulDescSetAttribute)        \
  X(cublasLtMatrixLayoutCreate)            \
  X(cublasLtMatrixLayoutDestroy)           \
  X(cublasLtMatmulPreferenceCreate)        \
  X(cublasLtMatmulPreferenceDestroy)       \
  X(cublasLtMatmulPreferenceSetAttribute)  \
  X(cublasLtMatmulAlgoGetHeuristic)
// clang-format on

namespace mlp::cuda {

struct CublasApi {
#define MLP_CUBLAS_MEMBER(name) decltype(&::name) name = nullptr;
  MLP_CUBLAS_FUNCTIONS(MLP_CUBLAS_MEMBER)
  MLP_CUBLASLT_FUNCTIONS(MLP_CUBLAS_MEMBER)
#undef MLP_CUBLAS_MEMBER
};

// "" once both libraries and every listed function are loaded (tried once per
// process), else one sentence naming the library or function that is missing.
const std::string& cublas_load_error();
// The loaded table; throws Error(kDevice) with cublas_load_error() when not loadable.
const CublasApi& cublas();

}  // namespace mlp::cuda
