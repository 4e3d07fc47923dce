// cuDNN, loaded at run time: cuDNN is only ever an independent reference (the
// GPU tests) or a peer (cuda_kernels_bench), so neither program links it and
// both start, and run everything else, where it is missing. Only cudnn.h is
// needed to build. Every call goes through the table: cudnn().cudnnCreate(...).
// Add a function to the list to use it. Header-only: each program has one
// table, loaded once ($MLP_CUDNN_LIB, else libcudnn.so.9, else libcudnn.so).
#pragma once

#include <cudnn.h>
#include <dlfcn.h>

#include <cstdlib>
#include <string>

// clang-format off
#define MLP_CUDNN_FUNCTIONS(X)           \
  X(cudnnGetVersion)                     \
  X(cudnnGetErrorString)                 \
  X(cudnnCreate)                         \
  X(cudnnDestroy)                        \
  X(cudnnSetStream)                      \
  X(cudnnCreateTensorDescriptor)         \
  X(cudnnSetTensor4dDescriptor)          \
  X(cudnnDestroyTensorDescriptor)        \
  X(cudnnSoftmaxForward)                 \
  X(cudnnAddTensor)                      \
  X(cudnnCreateActivationDescriptor)     \
  X(cudnnSetActivationDescriptor)        \
  X(cudnnDestroyActivationDescriptor)    \
  X(cudnnActivationForward)              \
  X(cudnnActivationBackward)             \
  X(cudnnConvolutionBackwardBias)
// clang-format on

namespace mlp::cudnn_loader {

struct CudnnApi {
#define MLP_CUDNN_MEMBER(name) decltype(&::name) name = nullptr;
  MLP_CUDNN_FUNCTIONS(MLP_CUDNN_MEMBER)
#undef MLP_CUDNN_MEMBER
  std::string library;  // what was loaded, e.g. "libcudnn.so.9"
  std::string error;    // "" when every function was found, else why not (one sentence)
};

namespace detail {

inline CudnnApi load() {
  CudnnApi api;
  const char* env = std::getenv("MLP_CUDNN_LIB");
  const bool from_env = env && *env;
  void* lib = nullptr;
  std::string tried;
  for (const char* name : {from_env ? env : "libcudnn.so.9", from_env ? "" : "libcudnn.so"}) {
    if (!*name) continue;
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      api.library = name;
      break;
    }
    const char* e = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name);
  }
  if (!lib) {
    api.error = "cuDNN could not be loaded (" + tried +
                "); put libcudnn.so.9 on LD_LIBRARY_PATH or name it in MLP_CUDNN_LIB";
    return api;
  }
#define MLP_CUDNN_FIND(name)                                          \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(lib, #name)); \
  if (!api.name && api.error.empty())                                 \
    api.error = api.library + " has no " #name " (an older cuDNN than this build's?)";
  MLP_CUDNN_FUNCTIONS(MLP_CUDNN_FIND)
#undef MLP_CUDNN_FIND
  return api;  // the library stays loaded for the process's lifetime
}

}  // namespace detail

// The table, loaded on first use; check error before calling through it.
inline const CudnnApi& cudnn() {
  static const CudnnApi api = detail::load();
  return api;
}

}  // namespace mlp::cudnn_loader
