// The experimental fused engine: a whole training step (forward, loss, backward, Adam) in one
// cooperative persistent kernel, one block per SM, following mlp/fused_schedule.h. Layout: the
// flat ParamLayout buffers, the device-resident OptimizerState and a workspace of
// fused::workspace_bytes(plan) (zeroed once). Invariant: deterministic, no float atomics; the
// CPU emulation (src/fused/) computes the same bits. See docs/fused-engine.md.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "mlp/fused_schedule.h"  // defines: Plan, StepArgs, workspace_bytes

namespace mlp::kernels {

inline constexpr int kFusedBlock = 256;  // threads per block; the plan does not depend on it

struct FusedLaunch {
  fused::Plan plan;        // for grid = the device's SM count
  std::size_t smem_bytes;  // dynamic shared memory per block
  int device;              // the device it was prepared on
  int blocks_per_sm;       // what the occupancy calculator allows (>= 1)
};

// For the current device: checks cooperative launch support, builds the plan for one block per
// SM within the shared memory a block may opt into, sets the kernel's shared-memory attribute
// and checks that one block per SM stays resident. Throws Error(kDevice, the reason) when the
// shape or the device is not supported. forward_only: an evaluation plan (forward and loss).
FusedLaunch fused_prepare(const int64_t* sizes, int32_t size_count, int64_t batch, bool binarize,
                          bool forward_only = false);

// Enqueues one launch running args.steps training steps on `stream`; never blocks the host.
// Pointers are device memory; args.grads may be null. Throws Error(kDevice) if the launch fails.
void fused_step(const FusedLaunch& launch, const fused::StepArgs& args, cudaStream_t stream);

}  // namespace mlp::kernels
