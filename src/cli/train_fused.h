// `train --engine fused`: the run after cmd_train has set up the configuration, the backend,
// the data and the Model (initialised or resumed), with FusedTrainer in place of Trainer. The
// reporter, the checkpoint contents (make_checkpoint) and the summary are train's own.
// Ctrl-C: the InterruptGuard has no Trainer to stop, so the first Ctrl-C ends the run at once
// (exit 130); the last checkpoint saved (--checkpoint-every) is intact, saves being atomic.
#pragma once

#include <optional>

#include "cli/reporter.h"
#include "cli/run_config.h"
#include "cli/train_checkpoint.h"
#include "mlp/backend.h"
#include "mlp/checkpoint.h"
#include "mlp/dataset.h"
#include "mlp/model.h"

namespace mlp::cli {

int run_fused_train(Reporter& report, const RunConfig& cfg, const CheckpointOptions& ckpt,
                    Backend& backend, Model& model, const Dataset& train, const Dataset& test,
                    const std::optional<Checkpoint>& resumed);

}  // namespace mlp::cli
