// DivergenceGuard (see divergence.h).
#include "cli/divergence.h"

#include <fmt/format.h>

#include "mlp/error.h"

namespace mlp::cli {

bool DivergenceGuard::on_epoch_end(const EpochStats& s) {
  const bool too_big = !(s.loss <= kDivergedLoss);
  const bool grew = seen_ && !(s.loss <= kDivergedGrowth * lowest_);
  if (too_big || grew)
    throw Error(ExitCode::kDiverged,
                fmt::format("training diverged: epoch {} loss {:.4g} is {} (lower --lr, or keep "
                            "--beta2 near 1); training stopped",
                            s.epoch, s.loss,
                            too_big ? fmt::format("above {:g}", kDivergedLoss)
                                    : fmt::format("more than {:g} times the lowest epoch loss "
                                                  "so far ({:.4g})",
                                                  kDivergedGrowth, lowest_)));
  if (!seen_ || s.loss < lowest_) lowest_ = s.loss;
  seen_ = true;
  return true;
}

}  // namespace mlp::cli
