// Device probing shared by make_cuda_backend and cuda_report (src/cuda only).
#pragma once

#include <string>

namespace mlp::cuda {

// "" when `device` exists and can run this build's kernels, else one plain
// sentence saying why not. Never throws; leaves the current device unchanged.
std::string device_problem(int device);

}  // namespace mlp::cuda
