// Loading cuBLAS and cuBLASLt (see cublas_api.h). The sonames are those of the
// toolkit this was built with (libcublas.so.13 for CUDA 13); they are looked
// up the way the dynamic loader would (LD_LIBRARY_PATH, the executable's
// RUNPATH, the ldconfig cache), then in the toolkit's library directory as
// found at build time.
#include "cuda/cublas_api.h"

#include <dlfcn.h>

#include "mlp/error.h"

#ifndef MLP_CUBLAS_SONAME
#define MLP_CUBLAS_SONAME "libcublas.so"
#endif
#ifndef MLP_CUBLASLT_SONAME
#define MLP_CUBLASLT_SONAME "libcublasLt.so"
#endif
#ifndef MLP_CUDA_LIBRARY_DIR
#define MLP_CUDA_LIBRARY_DIR ""
#endif

namespace mlp::cuda {
namespace {

struct Loaded {
  CublasApi api;
  std::string error;
};

void* open_library(const char* soname, std::string* error) {
  // RTLD_GLOBAL: libcublas resolves libcublasLt's symbols through it.
  if (void* h = dlopen(soname, RTLD_NOW | RTLD_GLOBAL)) return h;
  const std::string first = dlerror();
  const std::string dir = MLP_CUDA_LIBRARY_DIR;
  if (!dir.empty())
    if (void* h = dlopen((dir + "/" + soname).c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
  *error = std::string(soname) + " could not be loaded (" + first +
           "); install the CUDA toolkit's cuBLAS or put it on LD_LIBRARY_PATH";
  return nullptr;
}

Loaded load() {
  Loaded l;
  void* lt = open_library(MLP_CUBLASLT_SONAME, &l.error);
  void* blas = lt ? open_library(MLP_CUBLAS_SONAME, &l.error) : nullptr;
  if (!blas) return l;
  const auto find = [&](void* lib, const char* soname, const char* name) -> void* {
    void* f = dlsym(lib, name);
    if (!f && l.error.empty())
      l.error = std::string(soname) + " has no " + name + " (an older cuBLAS than this build's?)";
    return f;
  };
#define MLP_CUBLAS_FIND(name) \
  l.api.name = reinterpret_cast<decltype(l.api.name)>(find(blas, MLP_CUBLAS_SONAME, #name));
#define MLP_CUBLASLT_FIND(name) \
  l.api.name = reinterpret_cast<decltype(l.api.name)>(find(lt, MLP_CUBLASLT_SONAME, #name));
  MLP_CUBLAS_FUNCTIONS(MLP_CUBLAS_FIND)
  MLP_CUBLASLT_FUNCTIONS(MLP_CUBLASLT_FIND)
#undef MLP_CUBLAS_FIND
#undef MLP_CUBLASLT_FIND
  return l;  // the libraries stay loaded for the process's lifetime
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}

}  // namespace

const std::string& cublas_load_error() { return loaded().error; }

const CublasApi& cublas() {
  const Loaded& l = loaded();
  if (!l.error.empty()) throw device_error(l.error);
  return l.api;
}

}  // namespace mlp::cuda
