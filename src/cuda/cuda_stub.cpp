// Built instead of the rest of src/cuda/ when CMake found no CUDA compiler (MLP_CUDA=OFF
// or AUTO without nvcc): --device cuda then fails with a clear reason.
#include "mlp/backend.h"
#include "mlp/error.h"

namespace mlp {

bool cuda_compiled() { return false; }

std::string cuda_unavailable_reason() {
  return "this mnist-mlp was built without CUDA (rebuild with nvcc on PATH, -DMLP_CUDA=ON)";
}

std::string cuda_report() { return "CUDA: not compiled in\n  " + cuda_unavailable_reason() + "\n"; }

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions&) {
  throw device_error("--device cuda: " + cuda_unavailable_reason());
}

}  // namespace mlp
