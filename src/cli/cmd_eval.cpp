// mnist-mlp eval: a checkpoint's loss, accuracy, per-class accuracy and 10x10
// confusion matrix on a dataset split, on the CPU or the GPU (evaluate() in
// trainer.h does the work; this file loads and prints).
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_flags.h"
#include "cli/engine_flag.h"
#include "cli/flag_checks.h"
#include "fused/fused_evaluate.h"
#include "mlp/backend.h"
#include "mlp/checkpoint.h"
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/evaluate.h"
#include "mlp/model.h"

namespace mlp::cli {
namespace {

struct EvalOptions {
  std::string model;
  std::string data_dir = "data/mnist";
  std::string split = "test";
  DeviceFlags device;
  EngineFlag engine;
  int64_t batch = 1000;
  bool json = false;
};

void print_human(const EvalOptions& o, const Checkpoint& c, const Dataset& ds, const Backend& be,
                 const EvalResult& r) {
  fmt::print("model  {}: {}\n", o.model, describe_checkpoint(c));
  fmt::print("data   {}: {} images\n", ds.images_path, ds.count);
  fmt::print("device {}\n", be.describe());
  int64_t correct = 0;
  for (int t = 0; t < kClasses; ++t) correct += r.confusion[t][t];
  fmt::print("loss {:.4f}  accuracy {:.2f}% ({} of {})\n\n", r.loss, 100 * r.accuracy, correct,
             r.count);
  fmt::print("class  accuracy  correct/total\n");
  for (int t = 0; t < kClasses; ++t) {
    int64_t total = 0;
    for (int p = 0; p < kClasses; ++p) total += r.confusion[t][p];
    const double acc =
        total ? static_cast<double>(r.confusion[t][t]) / static_cast<double>(total) : 0.0;
    fmt::print("{:>5}  {:>7.2f}%  {:>6}/{}\n", t, 100 * acc, r.confusion[t][t], total);
  }
  fmt::print("\nconfusion matrix (rows: true class, columns: predicted class)\n     ");
  for (int p = 0; p < kClasses; ++p) fmt::print("{:>6}", p);
  fmt::print("\n");
  for (int t = 0; t < kClasses; ++t) {
    fmt::print("{:>5}", t);
    for (int p = 0; p < kClasses; ++p) fmt::print("{:>6}", r.confusion[t][p]);
    fmt::print("\n");
  }
}

void print_json(const EvalOptions& o, const Checkpoint& c, const Dataset& ds, const EvalResult& r) {
  nlohmann::json per_class = nlohmann::json::array();
  nlohmann::json confusion = nlohmann::json::array();
  for (int t = 0; t < kClasses; ++t) {
    int64_t total = 0;
    for (int p = 0; p < kClasses; ++p) total += r.confusion[t][p];
    per_class.push_back(total ? static_cast<double>(r.confusion[t][t]) / static_cast<double>(total)
                              : 0.0);
    confusion.push_back(r.confusion[t]);
  }
  const nlohmann::json j = {
      {"model", o.model},       {"layers", c.sizes},      {"epochs_done", c.epochs_done},
      {"data", ds.images_path}, {"split", o.split},       {"count", r.count},
      {"loss", r.loss},         {"accuracy", r.accuracy}, {"per_class_accuracy", per_class},
      {"confusion", confusion}};
  fmt::print("{}\n", j.dump());
}

EvalResult evaluate_checkpoint(Backend& backend, const Checkpoint& c, int64_t batch,
                               const Dataset& ds) {
  Model model(backend, c.sizes, std::min(batch, ds.count), c.adam, c.binarize);
  model.set_state(c.state);
  const DeviceDataset dev(backend, ds);
  return evaluate(backend, model, dev);
}

int run_eval(const EvalOptions& o) {
  check_engine_flags(o.engine, o.device, false);
  const Checkpoint c = load_checkpoint(o.model);
  const BackendOptions bo = backend_options(o.device);
  const Dataset ds =
      load_split(o.data_dir, o.split == "train" ? Split::kTrain : Split::kTest, c.sizes.front());
  if (ds.rows != c.image_rows || ds.cols != c.image_cols)
    throw data_error(fmt::format("{}: images are {}x{}; the model {} was trained on {}x{}",
                                 ds.images_path, ds.rows, ds.cols, o.model, c.image_rows,
                                 c.image_cols));
  std::unique_ptr<Backend> backend = make_backend(bo);
  const EvalResult r =
      o.engine.fused()  // the fused engine's forward-only plan (docs/fused-engine.md)
          ? fused::FusedEvaluator(backend->kind(), c.sizes, o.batch, c.binarize, ds)
                .evaluate(c.state.params)
          : evaluate_checkpoint(*backend, c, o.batch, ds);
  if (o.json)
    print_json(o, c, ds, r);
  else
    print_human(o, c, ds, *backend, r);
  return 0;
}

}  // namespace

Command add_eval_command(CLI::App& root) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* app = root.add_subcommand(
      "eval", "Loss, accuracy, per-class accuracy and confusion matrix of a checkpoint");
  app->add_option("--model", o->model, "Checkpoint written by train --save")
      ->required()
      ->type_name("FILE")
      ->check(kNonEmpty);
  app->add_option("--data", o->data_dir, "Directory with the MNIST IDX files (raw or .gz)")
      ->capture_default_str()
      ->check(kNonEmpty);
  app->add_option("--split", o->split, "Which split to evaluate: test or train")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "train"}));
  add_device_flags(app, o->device);
  add_engine_flag(app, o->engine);
  app->add_option("--batch-size", o->batch, "Images per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app->add_flag("--json", o->json, "Print one JSON object instead of tables");
  return {app, [o] { return run_eval(*o); }};
}

}  // namespace mlp::cli
