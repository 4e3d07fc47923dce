// The subcommands of mnist-mlp. Each add_*_command registers its flags on the
// root CLI11 app and returns the function that runs it once parsing succeeded.
// Run functions return the exit code or throw mlp::Error; main() reports it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace mlp::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command add_train_command(CLI::App& root);
Command add_info_command(CLI::App& root);
Command add_eval_command(CLI::App& root);
Command add_predict_command(CLI::App& root);
Command add_export_command(CLI::App& root);
Command add_bench_command(CLI::App& root);

}  // namespace mlp::cli
