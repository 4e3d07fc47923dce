// Refuses a network that cannot fit before anything is allocated: `--hidden
// 65536,65536` passes the per-layer range check but needs about 70 GB, and
// would otherwise allocate until the kernel kills the process.
#pragma once

#include <cstdint>
#include <vector>

#include "mlp/backend.h"

namespace mlp::cli {

// Host bytes a training run of `sizes` with `batch` needs at least: the
// initial parameters built on the host and, on the CPU, the model itself
// (parameters, gradients, two Adam moments, activations and their gradients
// for a batch). Checkpoint copies are not counted: a lower bound.
uint64_t training_host_bytes(const std::vector<int64_t>& sizes, int64_t batch, BackendKind kind);
// MemAvailable from /proc/meminfo in bytes, 0 when unknown.
uint64_t available_host_bytes();
// Error(kUsage) naming --hidden and --batch-size, the bytes needed and available.
void check_training_memory(const std::vector<int64_t>& sizes, int64_t batch, BackendKind kind);

}  // namespace mlp::cli
