// mnist-mlp train: flags -> RunConfig -> backend, data, model -> Trainer, with
// the reporter and the checkpoint saver listening.
#include <fmt/format.h>
#include <signal.h>

#include <optional>

#include "cli/commands.h"
#include "cli/device_flags.h"
#include "cli/divergence.h"
#include "cli/engine_flag.h"
#include "cli/flag_checks.h"
#include "cli/memory_check.h"
#include "cli/path_guard.h"
#include "cli/reporter.h"
#include "cli/run_config.h"
#include "cli/signals.h"
#include "cli/train_checkpoint.h"
#include "cli/train_fused.h"
#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/file_io.h"
#include "mlp/model.h"
#include "mlp/trainer.h"

namespace mlp::cli {
namespace {

struct TrainOptions {
  RunConfig cfg;
  DeviceFlags device;
  EngineFlag engine;
  std::string init = "he";
  bool no_graph = false;
  bool quiet = false;
  std::string log_json;
  std::string hidden = "500,500,500";  // --hidden as given; kHiddenList checked it
  CheckpointOptions ckpt;
  ScheduleFlags lr;
};

// After the first Ctrl-C, SIGTERM or SIGHUP: save where training stopped (when
// --save is given), say where, and return 128 + the signal.
int finish_interrupted(Reporter& report, CheckpointSaver& saver, const Trainer& trainer,
                       const CheckpointOptions& ckpt, int sig) {
  const TrainPosition& p = trainer.position();
  const std::string where = p.step == 0 ? fmt::format("after epoch {}", p.epoch)
                                        : fmt::format("in epoch {} at step {} of {}", p.epoch + 1,
                                                      p.step, trainer.steps_per_epoch());
  saver.save(p);
  const std::string how = sig == SIGINT
                              ? std::string("interrupted")
                              : fmt::format("stopped by {}", InterruptGuard::signal_name(sig));
  report.event({{"event", "interrupted"},
                {"signal", InterruptGuard::signal_name(sig)},
                {"epochs_done", p.epoch},
                {"step_in_epoch", p.step}});
  std::fflush(stdout);
  report.clear_line();
  if (saver.enabled())
    fmt::print(stderr,
               "mnist-mlp: {} {}; checkpoint saved to {}; continue with "
               "--resume {}\n",
               how, where, ckpt.save, ckpt.save);
  else
    fmt::print(stderr,
               "mnist-mlp: {} {}; nothing saved (pass --save FILE to keep "
               "progress)\n",
               how, where);
  return 128 + sig;
}

void print_header(Reporter& report, const RunConfig& cfg, const Backend& backend,
                  const Dataset& train, const Dataset& test, const Model& model,
                  const Trainer& trainer) {
  const std::vector<int64_t>& sizes = model.layout().sizes();
  nlohmann::json fields = start_fields(cfg, backend, train, test, model, trainer.steps_per_epoch());
  fields.update({{"lr_schedule", schedule_name(cfg.schedule.kind)},
                 {"lr_gamma", cfg.schedule.gamma},
                 {"lr_step_steps", cfg.schedule.step_size},
                 {"lr_warmup_steps", cfg.schedule.warmup_steps},
                 {"lr_total_steps", cfg.schedule.total_steps},
                 {"lr_min", cfg.schedule.min_lr},
                 {"log_interval", cfg.log_interval},
                 {"graph", cfg.use_graph && trainer.graph_fallback().empty()}});
  report.header(
      fields,
      fmt::format("mnist-mlp {} | {}\n"
                  "data   {}: {} train, {} test ({})\n"
                  "model  {} ({:L} parameters), init {}, seed {}\n"
                  "train  Adam {}, batch {}, {} epoch{} of {} step{}{}{}\n",
                  MLP_VERSION, backend.describe(), cfg.data_dir, train.count, test.count,
                  cfg.binarize ? "binarized pixels" : "pixels / 255", format_sizes(sizes),
                  model.layout().parameter_count(), init_name(cfg.init), cfg.seed,
                  describe_schedule(cfg.schedule, cfg.adam, trainer.steps_per_epoch()),
                  cfg.batch_size, cfg.epochs, cfg.epochs == 1 ? "" : "s", trainer.steps_per_epoch(),
                  trainer.steps_per_epoch() == 1 ? "" : "s", cfg.use_graph ? "" : ", no graph",
                  cfg.profile_steps > 0 ? fmt::format(", profiling {} step{}", cfg.profile_steps,
                                                      cfg.profile_steps == 1 ? "" : "s")
                                        : ""));
  if (!trainer.graph_fallback().empty())
    report.warn(
        fmt::format("CUDA Graph capture failed, so every step is launched eagerly "
                    "(slower, same results): {}",
                    trainer.graph_fallback()));
}

int run_train(TrainOptions& o, const CLI::App& app) {
  RunConfig& cfg = o.cfg;
  cfg.init = parse_init(o.init);
  InterruptGuard interrupt;  // until a trainer is attached, Ctrl-C exits at once
  cfg.use_graph = !o.no_graph;
  check_engine_flags(o.engine, o.device, o.no_graph);
  BackendOptions bo = backend_options(o.device);
  bo.quiet = o.quiet;
  cfg.hidden = parse_int_list(o.hidden);

  // Before --log-json is opened (truncated): no output may be an input or another output,
  // and none may replace a file of another kind.
  std::vector<NamedPath> inputs = mnist_inputs(cfg.data_dir);
  inputs.push_back({"--resume", o.ckpt.resume});
  check_distinct({{"--save", o.ckpt.save}, {"--log-json", o.log_json}}, inputs,
                 {{"--save", "--resume"}});
  check_replaceable({"--save", o.ckpt.save}, OutputKind::kCheckpoint);
  check_replaceable({"--log-json", o.log_json}, OutputKind::kJsonLines);
  check_checkpoint_options(o.ckpt, cfg);
  // One writer per checkpoint: a second run saving to the same path is refused now.
  std::optional<PathLock> save_lock;
  if (!o.ckpt.save.empty()) save_lock.emplace(o.ckpt.save, ExitCode::kUsage, "--save");

  Reporter report(o.quiet, o.log_json);  // opens --log-json first: fail before any work
  std::optional<Checkpoint> resumed;
  if (!o.ckpt.resume.empty()) resumed = apply_resume(o.ckpt, app, cfg);
  if (resumed && o.ckpt.save.empty())
    report.warn(fmt::format(
        "--resume {} without --save: the training continued here is not saved anywhere (add "
        "--save {} to continue the checkpoint in place)",
        o.ckpt.resume, o.ckpt.resume));
  std::unique_ptr<Backend> backend = make_backend(bo);
  check_training_memory(layer_sizes(cfg, resumed ? resumed->sizes.front() : 784), cfg.batch_size,
                        backend->kind());
  const Dataset train = load_split(cfg.data_dir, Split::kTrain);
  const Dataset test = load_split(cfg.data_dir, Split::kTest);
  if (resumed) {
    check_resume_data(*resumed, o.ckpt.resume, train);
    check_resume_schedule(*resumed, o.ckpt.resume, app, o.lr);
  } else {
    cfg.schedule = make_schedule(o.lr, cfg.epochs, train.count / cfg.batch_size);
  }

  Model model(*backend, layer_sizes(cfg, train.pixels()), cfg.batch_size, cfg.adam, cfg.binarize,
              cfg.schedule);
  if (resumed)
    model.set_state(resumed->state);
  else
    model.set_params(initial_params(model.layout(), cfg.init, cfg.seed));
  if (o.engine.fused())
    return run_fused_train(report, cfg, o.ckpt, *backend, model, train, test, resumed);
  Trainer trainer(*backend, model, train, &test, trainer_options(cfg));
  InterruptGuard::Attachment stop_on_interrupt(trainer);
  CheckpointSaver saver(report, o.ckpt, cfg, model, train, trainer);
  print_header(report, cfg, *backend, train, test, model, trainer);

  if (resumed) {
    report.say(fmt::format("resumed from {}: {} epoch{} done, step {} of {} in the next",
                           o.ckpt.resume, resumed->epochs_done,
                           resumed->epochs_done == 1 ? "" : "s", resumed->step_in_epoch,
                           trainer.steps_per_epoch()));
    report.event({{"event", "resume"},
                  {"path", o.ckpt.resume},
                  {"epochs_done", resumed->epochs_done},
                  {"step_in_epoch", resumed->step_in_epoch}});
  }
  // A profile run is bracketed by cudaProfilerStart/Stop (nsys/ncu capture ranges).
  if (cfg.profile_steps > 0) backend->profiler_start();
  std::vector<EpochStats> epochs;
  DivergenceGuard divergence;  // before the saver: a diverged epoch is never saved
  try {
    epochs = trainer.run({&report, &divergence, &saver},
                         resumed ? checkpoint_position(*resumed) : TrainPosition{});
  } catch (const LogWriteError& e) {
    // The log failed (disk full?) at an epoch end or an interval line: keep the steps
    // trained so far first (the Trainer's position is the last issued step); the
    // checkpoint's directory may still have space.
    if (!saver.enabled()) throw;
    std::string saved =
        fmt::format("the checkpoint was saved to {} first (continue with --resume {})", o.ckpt.save,
                    o.ckpt.save);
    try {
      saver.save(trainer.position());
    } catch (const LogWriteError&) {  // the file was written; only its log line failed
    } catch (const Error& s) {
      saved = fmt::format("saving the checkpoint failed too: {}", s.what());
    }
    throw Error(e.code(), fmt::format("{}; {}", e.what(), saved));
  } catch (const Error& e) {
    if ((e.code() != ExitCode::kNonFinite && e.code() != ExitCode::kDiverged) || !saver.enabled())
      throw;
    throw Error(e.code(), fmt::format("{}; nothing was saved after the divergence, so {} keeps "
                                      "its last good checkpoint (if any)",
                                      e.what(), o.ckpt.save));
  }
  if (cfg.profile_steps > 0) {
    backend->synchronize();
    backend->profiler_stop();
  }
  if (interrupt.interrupted())
    return finish_interrupted(report, saver, trainer, o.ckpt, interrupt.signal_number());
  double seconds = 0;
  for (const auto& e : epochs) seconds += e.seconds;
  if (cfg.profile_steps > 0) {
    report.say(fmt::format("profiled {} step{} in {:.3f} s", cfg.profile_steps,
                           cfg.profile_steps == 1 ? "" : "s", seconds));
    return 0;
  }
  saver.save(trainer.position());
  // The whole run's epochs, those before a resume included.
  report.summary(epochs.empty() ? nullptr : &epochs.back(), seconds, trainer.position().epoch,
                 static_cast<int64_t>(epochs.size()));
  return 0;
}

}  // namespace

Command add_train_command(CLI::App& root) {
  auto o = std::make_shared<TrainOptions>();
  RunConfig& c = o->cfg;
  CLI::App* app = root.add_subcommand("train", "Train the MLP on MNIST-format data");
  app->add_option("--data", c.data_dir, "Directory with the four MNIST IDX files (raw or .gz)")
      ->capture_default_str()
      ->check(kNonEmpty);
  app->add_option("--epochs", c.epochs, "Passes over the training set")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app->add_option("--batch-size", c.batch_size, "Samples per optimizer step")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  // Checked as the float32 the optimizer uses: 1e39 would be inf, 1e-46 zero.
  app->add_option("--lr", c.adam.lr, "Adam learning rate")
      ->capture_default_str()
      ->check(kPositiveF32);
  app->add_option("--beta1", c.adam.beta1, "Adam first-moment decay")
      ->capture_default_str()
      ->check(kUnitIntervalF32);
  app->add_option("--beta2", c.adam.beta2, "Adam second-moment decay")
      ->capture_default_str()
      ->check(kUnitIntervalF32);
  app->add_option("--eps", c.adam.eps, "Adam epsilon")->capture_default_str()->check(kPositiveF32);
  // One string, split here: a repeated --hidden is refused like any repeated flag, and
  // "500,,500" is malformed instead of a shorter list.
  app->add_option("--hidden", o->hidden,
                  fmt::format("Hidden layer sizes, comma-separated (1 to {} layers of 1..65536)",
                              max_hidden_layers()))
      ->default_str("500,500,500")
      ->check(kHiddenList);
  app->add_option("--init", o->init,
                  "Weight init: he (N(0, 2/fan_in), zero bias) or normal "
                  "(N(0,1) weights and biases, the tutorial's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"he", "normal"}));
  app->add_option("--seed", c.seed, "Seed for init and shuffling (0 .. 2^64-1)")
      ->capture_default_str()
      ->check(kUnsigned64);
  add_device_flags(app, o->device);
  add_engine_flag(app, o->engine);
  app->add_flag("--binarize", c.binarize,
                "Threshold pixels at 128 to 0/1 instead of scaling by 1/255");
  app->add_flag("--no-graph", o->no_graph,
                "CUDA: issue each step's kernels eagerly instead of replaying a CUDA Graph");
  app->add_option("--profile-steps", c.profile_steps,
                  "Train N steps inside cudaProfilerStart/Stop (for nsys/ncu), evaluate "
                  "nothing, then exit (default: off)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app->add_option("--lr-schedule", o->lr.kind,
                  "Learning rate over the run: constant, step (x --lr-gamma every --lr-step "
                  "epochs, PyTorch's StepLR) or cosine (to --lr-min at the run's end, "
                  "CosineAnnealingLR)")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  app->add_option("--lr-gamma", o->lr.gamma, "step: the factor applied every --lr-step epochs")
      ->capture_default_str()
      ->check(kPositiveF32);
  app->add_option("--lr-step", o->lr.step_epochs, "step: epochs between two decays")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app->add_option("--lr-warmup", o->lr.warmup_steps,
                  "Linear warm-up over the first N steps (any schedule; 0: none)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app->add_option("--lr-min", o->lr.min_lr, "cosine: the learning rate at the run's end")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1e30f));
  app->add_option("--log-interval", c.log_interval,
                  "Running loss and accuracy of the last N steps in the progress bar and "
                  "--log-json (read without stalling the GPU; 0: per epoch only)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app->add_option("--log-json", o->log_json,
                  "Write JSON lines (start, interval, epoch, summary) to FILE (default: none)")
      ->check(kNonEmpty);
  app->add_flag("-q,--quiet", o->quiet, "Print only the final result line and errors");
  add_checkpoint_options(app, o->ckpt);
  return {app, [o, app] { return run_train(*o, *app); }};
}

}  // namespace mlp::cli
