// CPU emulation of the fused training step: runs the kernel's schedule block by block, stage
// by stage (a grid barrier becomes the end of a stage), over the same flat parameter buffers,
// the same workspace and counters, with the same tiles, the same summation orders and the same
// element recipes (mlp/fused_math.h). Host pointers in StepArgs; the GPU kernel's results
// equal these bit for bit wherever both run the same recipe (see docs/fused-engine.md).
#pragma once

#include <cstdint>

#include "mlp/fused_schedule.h"

namespace mlp::fused {

struct EmulationOptions {
  // 0: blocks run in ascending order inside a stage; otherwise a different shuffle of the
  // blocks per stage from this seed. A correct schedule gives the same bits for every order.
  uint64_t block_order_seed = 0;
};

// `steps` training steps, as one launch of the kernel would run them. The workspace must hold
// workspace_bytes(plan) bytes, zeroed before the first call.
void emulate_steps(const Plan& plan, const StepArgs& args, const EmulationOptions& opt = {});

}  // namespace mlp::fused
