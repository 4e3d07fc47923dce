// mnist-mlp: train, inspect and use the tutorial's deep MLP on MNIST.
// The one place where errors become messages and exit codes (README: "Exit codes").
#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "mlp/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "mnist-mlp: the TensorFlow tutorial's 784-500-500-500-10 MLP, trained with "
      "cuBLAS + custom CUDA kernels or on the CPU with OpenBLAS",
      "mnist-mlp"};
  app.set_version_flag("--version", std::string("mnist-mlp ") + MLP_VERSION);
  app.require_subcommand(1);
  std::vector<mlp::cli::Command> commands{
      mlp::cli::add_train_command(app),  mlp::cli::add_info_command(app),
      mlp::cli::add_eval_command(app),   mlp::cli::add_predict_command(app),
      mlp::cli::add_export_command(app), mlp::cli::add_bench_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints CLI11's message naming the flag
    return static_cast<int>(mlp::ExitCode::kUsage);
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
    return static_cast<int>(mlp::ExitCode::kUsage);
  } catch (const mlp::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: error: {}\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: internal error: {}\n", e.what());
    return static_cast<int>(mlp::ExitCode::kFailure);
  }
}
