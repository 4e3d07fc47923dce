// Kernel-image probe (see probe.cuh). Every .cu here is compiled for the same
// CUDA_ARCHITECTURES, so one empty kernel stands for all of them.
#include "kernels/probe.cuh"

namespace mlp::kernels {
namespace {

__global__ void probe_kernel() {}

}  // namespace

cudaError_t probe_kernel_image(int* binary_version, int* ptx_version) {
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, probe_kernel);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky; clear it so later checks start clean
    return e;
  }
  *binary_version = attr.binaryVersion;
  *ptx_version = attr.ptxVersion;
  return cudaSuccess;
}

}  // namespace mlp::kernels
