// DivergenceGuard: stops a run whose loss is finite but exploding (the
// Trainer itself only stops on NaN/Inf). An epoch's mean training loss above
// kDivergedLoss, or more than kDivergedGrowth times the lowest epoch loss of
// the run so far, throws Error(kDiverged) from on_epoch_end, before any later
// listener (the checkpoint saver) hears of the epoch, so the diverged state is
// never saved. Listed before the CheckpointSaver.
#pragma once

#include <cstdint>

#include "mlp/trainer.h"

namespace mlp::cli {

// Far above any healthy run: the tutorial's N(0,1) init starts near 1e4 and falls.
inline constexpr double kDivergedLoss = 1e9;
inline constexpr double kDivergedGrowth = 1000;

class DivergenceGuard final : public TrainListener {
 public:
  bool on_epoch_end(const EpochStats& s) override;

 private:
  double lowest_ = 0;
  bool seen_ = false;
};

}  // namespace mlp::cli
