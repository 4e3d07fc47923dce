// Kernel-image probe: tells whether this build holds machine code (or PTX)
// that the current device can run, before any real launch fails.
#pragma once

#include <cuda_runtime_api.h>

namespace mlp::kernels {

// cudaSuccess and the image's SASS/PTX versions (e.g. 90) when the current
// device can run this build's kernels; otherwise the CUDA error (typically
// cudaErrorNoKernelImageForDevice or cudaErrorInvalidDeviceFunction).
cudaError_t probe_kernel_image(int* binary_version, int* ptx_version);

}  // namespace mlp::kernels
