// mnist-mlp export: a checkpoint's weights and biases as safetensors, named and
// shaped for PyTorch (layers.L.weight (out, in), layers.L.bias (out)); the
// Adam moments and training position stay in the checkpoint.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/flag_checks.h"
#include "cli/path_guard.h"
#include "mlp/checkpoint.h"
#include "mlp/file_io.h"
#include "mlp/safetensors.h"

namespace mlp::cli {

Command add_export_command(CLI::App& root) {
  struct Options {
    std::string model, out;
  };
  auto o = std::make_shared<Options>();
  CLI::App* app = root.add_subcommand(
      "export", "Write a checkpoint's weights as safetensors for PyTorch (layers.0.weight, ...)");
  app->add_option("--model", o->model, "Checkpoint written by train --save")
      ->required()
      ->type_name("FILE")
      ->check(kNonEmpty);
  app->add_option("--out", o->out,
                  "Output file, e.g. model.safetensors (replaces only a safetensors file)")
      ->required()
      ->type_name("FILE")
      ->check(kNonEmpty);
  return {app, [o] {
            // Before anything is read or written: --out must not be --model (that would
            // destroy the checkpoint) nor replace a file that is not a safetensors export.
            check_distinct({{"--out", o->out}}, {{"--model", o->model}});
            check_replaceable({"--out", o->out}, OutputKind::kSafetensors);
            const Checkpoint c = load_checkpoint(o->model);
            check_writable_path(o->out, ExitCode::kCheckpoint, "--out");
            export_safetensors(c, o->out);
            fmt::print("wrote {}: {} as safetensors (F32):\n", o->out, format_sizes(c.sizes));
            const ParamLayout layout(c.sizes);
            for (int64_t l = 0; l < layout.layers(); ++l)
              fmt::print("  layers.{}.weight [{}, {}]  layers.{}.bias [{}]\n", l, layout.fan_out(l),
                         layout.fan_in(l), l, layout.fan_out(l));
            return 0;
          }};
}

}  // namespace mlp::cli
