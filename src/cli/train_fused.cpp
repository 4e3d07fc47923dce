// `train --engine fused` (see train_fused.h).
#include "cli/train_fused.h"

#include <fmt/format.h>

#include "fused/fused_trainer.h"
#include "mlp/error.h"

namespace mlp::cli {
namespace {

// Saves at --checkpoint-every epoch ends and at the end, as CheckpointSaver does for Trainer.
class FusedSaver final : public TrainListener {
 public:
  FusedSaver(Reporter& report, const CheckpointOptions& o, const RunConfig& cfg, const Model& model,
             const Dataset& train, const fused::FusedTrainer& trainer)
      : report_(report), opt_(o), cfg_(cfg), model_(model), train_(train), trainer_(trainer) {}
  bool enabled() const { return !opt_.save.empty(); }
  void save(const TrainPosition& pos) {
    if (!enabled()) return;
    const int64_t step = pos.epoch * trainer_.steps_per_epoch() + pos.step;
    if (step == saved_step_) return;
    save_checkpoint(opt_.save, make_checkpoint(cfg_, model_, train_, pos));
    saved_step_ = step;
    report_.say(fmt::format("checkpoint saved to {} (epoch {} done{})", opt_.save, pos.epoch,
                            pos.step == 0 ? "" : fmt::format(", step {} of the next", pos.step)));
    report_.event({{"event", "checkpoint"},
                   {"path", opt_.save},
                   {"epochs_done", pos.epoch},
                   {"step_in_epoch", pos.step},
                   {"step", step}});
  }
  bool on_epoch_end(const EpochStats& s) override {
    if (opt_.every > 0 && s.epoch % opt_.every == 0) save(trainer_.position());
    return true;
  }

 private:
  Reporter& report_;
  const CheckpointOptions& opt_;
  const RunConfig& cfg_;
  const Model& model_;
  const Dataset& train_;
  const fused::FusedTrainer& trainer_;
  int64_t saved_step_ = -1;
};

void print_header(Reporter& report, const RunConfig& cfg, const Backend& backend,
                  const Dataset& train, const Dataset& test, const Model& model,
                  const fused::FusedTrainer& trainer) {
  const std::vector<int64_t>& sizes = model.layout().sizes();
  nlohmann::json fields = start_fields(cfg, backend, train, test, model, trainer.steps_per_epoch());
  fields.update({{"engine", "fused"}, {"fused", trainer.describe()}, {"graph", false}});
  report.header(
      fields,
      fmt::format(
          "mnist-mlp {} | {}\n"
          "engine fused (experimental): {}\n"
          "data   {}: {} train, {} test ({})\n"
          "model  {} ({:L} parameters), init {}, Adam lr {:g}, batch {}, {} epochs, "
          "seed {}{}\n",
          MLP_VERSION, backend.describe(), trainer.describe(), cfg.data_dir, train.count,
          test.count, cfg.binarize ? "binarized pixels" : "pixels / 255", format_sizes(sizes),
          model.layout().parameter_count(), init_name(cfg.init), cfg.adam.lr, cfg.batch_size,
          cfg.epochs, cfg.seed,
          cfg.profile_steps > 0 ? fmt::format(", profiling {} steps", cfg.profile_steps) : ""));
}

}  // namespace

int run_fused_train(Reporter& report, const RunConfig& cfg, const CheckpointOptions& ckpt,
                    Backend& backend, Model& model, const Dataset& train, const Dataset& test,
                    const std::optional<Checkpoint>& resumed) {
  fused::FusedTrainer trainer(backend, model, cfg.binarize, train, &test, trainer_options(cfg));
  FusedSaver saver(report, ckpt, cfg, model, train, trainer);
  print_header(report, cfg, backend, train, test, model, trainer);
  if (backend.kind() == BackendKind::kCpu)
    report.warn(
        "--engine fused on the CPU runs the kernel's emulation, block by block: a test oracle, "
        "far slower than --engine cublas");
  if (resumed) {
    report.say(fmt::format("resumed from {}: {} epoch{} done, step {} of {} in the next",
                           ckpt.resume, resumed->epochs_done, resumed->epochs_done == 1 ? "" : "s",
                           resumed->step_in_epoch, trainer.steps_per_epoch()));
    report.event({{"event", "resume"},
                  {"path", ckpt.resume},
                  {"epochs_done", resumed->epochs_done},
                  {"step_in_epoch", resumed->step_in_epoch}});
  }
  if (cfg.profile_steps > 0) backend.profiler_start();
  std::vector<EpochStats> epochs;
  try {
    epochs =
        trainer.run({&report, &saver}, resumed ? checkpoint_position(*resumed) : TrainPosition{});
  } catch (const Error& e) {
    if (e.code() != ExitCode::kNonFinite || !saver.enabled()) throw;
    throw Error(e.code(), fmt::format("{}; nothing was saved after the divergence, so {} keeps "
                                      "its last good checkpoint (if any)",
                                      e.what(), ckpt.save));
  }
  if (cfg.profile_steps > 0) backend.profiler_stop();
  double seconds = 0;
  for (const auto& e : epochs) seconds += e.seconds;
  if (cfg.profile_steps > 0) {
    report.say(fmt::format("profiled {} steps in {:.3f} s", cfg.profile_steps, seconds));
    return 0;
  }
  saver.save(trainer.position());
  report.summary(epochs.empty() ? nullptr : &epochs.back(), seconds, trainer.position().epoch,
                 static_cast<int64_t>(epochs.size()));
  return 0;
}

}  // namespace mlp::cli
