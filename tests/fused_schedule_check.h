// A checker for the fused engine's schedule (mlp/fused_schedule.h), used by the schedule tests.
// It models what every task of every stage reads and writes, element by element, as the kernel
// does, and reports the first violation: an element written twice or never in a step (coverage),
// a read before the producing stage or after this step's update (dependencies), or two tasks of
// one stage touching an element one of them writes, unless a counter orders them (races).
// A forward-only plan must write no parameter and no hidden-layer gradient at all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "mlp/fused_schedule.h"

namespace mlp::fused {

// Which tile of `op` block `block` runs (-1: none). The real one is block_tile; tests pass
// deliberately broken ones.
using TileOwner = std::function<int32_t(const Plan&, Op, int32_t block)>;

// "" when the schedule is sound over `steps` consecutive steps; otherwise the first problem.
std::string check_schedule(const Plan& plan, const TileOwner& owner, int steps = 2);
inline std::string check_schedule(const Plan& plan) { return check_schedule(plan, block_tile); }

}  // namespace mlp::fused
