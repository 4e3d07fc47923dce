// train's checkpoint flags (see train_checkpoint.h).
#include "cli/train_checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include "cli/flag_checks.h"
#include "mlp/error.h"
#include "mlp/file_io.h"

namespace mlp::cli {

void add_checkpoint_options(CLI::App* app, CheckpointOptions& o) {
  CLI::Option* save =
      app->add_option(
             "--save", o.save,
             "Write a checkpoint to FILE at the end, every --checkpoint-every epochs, and on "
             "Ctrl-C "
             "(atomically replaced; a failed or diverged run never clobbers the last good one)")
          ->type_name("FILE")
          ->check(kNonEmpty);
  app->add_option("--checkpoint-every", o.every,
                  "Also save to --save every N epochs (0: only at the end)")
      ->capture_default_str()
      ->type_name("N")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}))
      ->needs(save);
  app->add_option("--resume", o.resume,
                  "Continue from a checkpoint: same network, data order and optimizer state, "
                  "bit-exact on the CPU; options not given are taken from it")
      ->type_name("FILE")
      ->check(kNonEmpty);
}

void check_checkpoint_options(const CheckpointOptions& o, const RunConfig& cfg) {
  if (cfg.profile_steps > 0 && (!o.save.empty() || !o.resume.empty()))
    throw usage_error(
        "--profile-steps runs a short capture; it cannot be combined with --save "
        "or --resume");
  if (!o.save.empty()) check_writable_path(o.save, ExitCode::kCheckpoint, "--save");
}

namespace {

template <class T>
void agree(const CLI::App& app, const char* flag, T& value, const T& stored,
           const std::string& path, const std::string& shown_stored,
           const std::string& shown_given) {
  if (app.get_option(flag)->count() == 0) {
    value = stored;
    return;
  }
  if (!(value == stored))
    throw checkpoint_error(fmt::format(
        "{}: the checkpoint was trained with {} {}, but {} {} was given; a resumed run keeps its "
        "training configuration (drop {})",
        path, flag, shown_stored, flag, shown_given, flag));
}

}  // namespace

Checkpoint apply_resume(const CheckpointOptions& o, const CLI::App& app, RunConfig& cfg) {
  Checkpoint c = load_checkpoint(o.resume);
  const std::string& p = o.resume;
  const std::vector<int64_t> hidden(c.sizes.begin() + 1, c.sizes.end() - 1);
  if (app.get_option("--hidden")->count() > 0 && cfg.hidden != hidden)
    throw checkpoint_error(fmt::format(
        "{}: shape mismatch: the checkpoint's network is {} (--hidden {}), but --hidden {} was "
        "given",
        p, format_sizes(c.sizes), fmt::join(hidden, ","), fmt::join(cfg.hidden, ",")));
  cfg.hidden = hidden;
  agree(app, "--batch-size", cfg.batch_size, c.batch_size, p, std::to_string(c.batch_size),
        std::to_string(cfg.batch_size));
  agree(app, "--lr", cfg.adam.lr, c.adam.lr, p, fmt::format("{:g}", c.adam.lr),
        fmt::format("{:g}", cfg.adam.lr));
  agree(app, "--beta1", cfg.adam.beta1, c.adam.beta1, p, fmt::format("{:g}", c.adam.beta1),
        fmt::format("{:g}", cfg.adam.beta1));
  agree(app, "--beta2", cfg.adam.beta2, c.adam.beta2, p, fmt::format("{:g}", c.adam.beta2),
        fmt::format("{:g}", cfg.adam.beta2));
  agree(app, "--eps", cfg.adam.eps, c.adam.eps, p, fmt::format("{:g}", c.adam.eps),
        fmt::format("{:g}", cfg.adam.eps));
  cfg.schedule = c.schedule;  // resume_schedule() checks the flags against it
  agree(app, "--init", cfg.init, c.init, p, init_name(c.init), init_name(cfg.init));
  agree(app, "--seed", cfg.seed, c.seed, p, std::to_string(c.seed), std::to_string(cfg.seed));
  agree(app, "--binarize", cfg.binarize, c.binarize, p, c.binarize ? "on" : "off",
        cfg.binarize ? "on" : "off");
  if (app.get_option("--epochs")->count() == 0) cfg.epochs = c.epochs;
  if (c.epochs_done >= cfg.epochs)
    throw usage_error(
        fmt::format("{}: the checkpoint has already trained {} epoch{}; pass "
                    "--epochs N with N > {} to train further",
                    p, c.epochs_done, c.epochs_done == 1 ? "" : "s", c.epochs_done));
  return c;
}

void check_resume_schedule(const Checkpoint& c, const std::string& path, const CLI::App& app,
                           const ScheduleFlags& flags) {
  bool given = false;
  for (const char* f : {"--lr-schedule", "--lr-gamma", "--lr-step", "--lr-warmup", "--lr-min"})
    given = given || app.get_option(f)->count() > 0;
  if (!given) return;
  const LrSchedule want = make_schedule(flags, c.epochs, c.steps_per_epoch());
  const LrSchedule& have = c.schedule;
  if (want.kind != have.kind || want.gamma != have.gamma || want.step_size != have.step_size ||
      want.warmup_steps != have.warmup_steps || want.total_steps != have.total_steps ||
      want.min_lr != have.min_lr)
    throw checkpoint_error(fmt::format(
        "{}: the checkpoint was trained with --lr-schedule {} ({}), which the --lr-* flags given "
        "would change; a resumed run continues its schedule (drop the --lr-* flags)",
        path, schedule_name(have.kind), describe_schedule(have, c.adam, c.steps_per_epoch())));
}

void check_resume_data(const Checkpoint& c, const std::string& path, const Dataset& train) {
  if (train.rows != c.image_rows || train.cols != c.image_cols)
    throw checkpoint_error(
        fmt::format("{}: shape mismatch: the checkpoint was trained on {}x{} "
                    "images, {} has {}x{}",
                    path, c.image_rows, c.image_cols, train.images_path, train.rows, train.cols));
  const uint32_t crc = labels_crc32(train);
  if (train.count != c.train_count || crc != c.train_labels_crc)
    throw checkpoint_error(fmt::format(
        "{}: the checkpoint was trained on other data ({} samples, labels CRC32 {:08x}); {} has {} "
        "samples, labels CRC32 {:08x}",
        path, c.train_count, c.train_labels_crc, train.labels_path, train.count, crc));
}

std::string describe_schedule(const LrSchedule& s, const AdamHyper& adam, int64_t steps_per_epoch) {
  std::string d;
  switch (s.kind) {
    case LrScheduleKind::kStep:
      d = fmt::format("lr {:g} x {:g} every {} step{}", adam.lr, s.gamma, s.step_size,
                      s.step_size == 1 ? "" : "s");
      if (steps_per_epoch > 0 && s.step_size % steps_per_epoch == 0) {
        const int64_t e = s.step_size / steps_per_epoch;
        d = fmt::format("lr {:g} x {:g} every {} epoch{}", adam.lr, s.gamma, e, e == 1 ? "" : "s");
      }
      break;
    case LrScheduleKind::kCosine:
      d = fmt::format("lr {:g} cosine to {:g} over {} step{}", adam.lr, s.min_lr, s.total_steps,
                      s.total_steps == 1 ? "" : "s");
      break;
    case LrScheduleKind::kConstant:
    default:
      d = fmt::format("lr {:g} constant", adam.lr);
  }
  if (s.warmup_steps > 0)
    d += fmt::format(", {} warm-up step{}", s.warmup_steps, s.warmup_steps == 1 ? "" : "s");
  return d;
}

// ---- from the run to the file format -------------------------------------------------------

uint32_t labels_crc32(const Dataset& data) {
  return static_cast<uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), data.labels.data(), data.labels.size()));
}

Checkpoint make_checkpoint(const RunConfig& cfg, const Model& model, const Dataset& train,
                           const TrainPosition& pos) {
  Checkpoint c;
  c.sizes = model.layout().sizes();
  c.image_rows = train.rows;
  c.image_cols = train.cols;
  c.batch_size = cfg.batch_size;
  c.adam = cfg.adam;
  c.schedule = model.schedule();
  c.init = cfg.init;
  c.binarize = cfg.binarize;
  c.seed = cfg.seed;
  c.epochs = cfg.epochs;
  c.train_count = train.count;
  c.train_labels_crc = labels_crc32(train);
  c.epochs_done = pos.epoch;
  c.step_in_epoch = pos.step;
  c.epoch_loss_sum = pos.loss_sum;
  c.epoch_correct = pos.correct;
  c.state = model.state();
  return c;
}

TrainPosition checkpoint_position(const Checkpoint& c) {
  return {c.epochs_done, c.step_in_epoch, c.epoch_loss_sum, c.epoch_correct};
}

// ---- saving during training ----------------------------------------------------------------

CheckpointSaver::CheckpointSaver(Reporter& report, const CheckpointOptions& o, const RunConfig& cfg,
                                 const Model& model, const Dataset& train, const Trainer& trainer)
    : report_(report), opt_(o), cfg_(cfg), model_(model), train_(train), trainer_(trainer) {}

void CheckpointSaver::save(const TrainPosition& pos) {
  if (!enabled()) return;
  const int64_t step = pos.epoch * trainer_.steps_per_epoch() + pos.step;
  if (step == saved_step_) return;
  save_checkpoint(opt_.save, make_checkpoint(cfg_, model_, train_, pos));
  saved_step_ = step;
  report_.say(pos.step == 0
                  ? fmt::format("checkpoint saved to {} (epoch {} done)", opt_.save, pos.epoch)
                  : fmt::format("checkpoint saved to {} (epoch {}, step {} of {})", opt_.save,
                                pos.epoch + 1, pos.step, trainer_.steps_per_epoch()));
  report_.event({{"event", "checkpoint"},
                 {"path", opt_.save},
                 {"epochs_done", pos.epoch},
                 {"step_in_epoch", pos.step},
                 {"step", step}});
}

bool CheckpointSaver::on_epoch_end(const EpochStats& s) {
  if (opt_.every > 0 && s.epoch % opt_.every == 0) save(trainer_.position());
  return true;
}

}  // namespace mlp::cli
