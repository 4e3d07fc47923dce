// mnist-mlp: train, inspect and use the tutorial's deep MLP on MNIST.
// The one place where errors become messages and exit codes (README: "Exit codes").
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <system_error>

#include "cli/commands.h"
#include "cli/signals.h"
#include "mlp/error.h"

namespace {

// Parser errors read like the program's own: "mnist-mlp: error: ...".
std::string failure_message(const CLI::App* app, const CLI::Error& e) {
  std::string s = "mnist-mlp: error: " + std::string(e.what()) + "\n";
  if (app->get_help_ptr() != nullptr)
    s += "Run with " + app->get_help_ptr()->get_name() + " for more information.\n";
  return s;
}

// Everything a command printed must have reached stdout: a full disk, /dev/full or a
// closed pipe otherwise ends in exit 0 with an empty file. Returns the exit code.
int finish_stdout(int rc) {
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  const int flush_errno = errno;
  const bool lost = flush_failed || std::ferror(stdout) || mlp::stdout_pipe_closed();
  errno = 0;
  const bool close_failed = std::fclose(stdout) != 0;  // the final write may fail only here
  const int close_errno = errno;
  if (!lost && !close_failed) return rc;
  const int err = flush_failed ? flush_errno : close_failed ? close_errno : 0;
  fmt::print(stderr, "mnist-mlp: error: writing standard output failed{}{}; output was lost\n",
             err ? ": " : (mlp::stdout_pipe_closed() ? ": the pipe was closed" : ""),
             err ? std::strerror(err) : "");
  return rc != 0 ? rc : static_cast<int>(mlp::ExitCode::kFailure);
}

}  // namespace

int main(int argc, char** argv) {
  mlp::install_broken_pipe_handler();
  CLI::App app{
      "mnist-mlp: the TensorFlow tutorial's 784-500-500-500-10 MLP, trained with "
      "cuBLAS + custom CUDA kernels or on the CPU with oneDNN (or OpenBLAS)",
      "mnist-mlp"};
  app.set_version_flag("--version", std::string("mnist-mlp ") + MLP_VERSION);
  app.require_subcommand(1);
  app.failure_message(failure_message);
  std::vector<mlp::cli::Command> commands{
      mlp::cli::add_train_command(app),  mlp::cli::add_info_command(app),
      mlp::cli::add_eval_command(app),   mlp::cli::add_predict_command(app),
      mlp::cli::add_export_command(app), mlp::cli::add_bench_command(app),
  };
  // `mnist-mlp bogus`: CLI11 would say "argument was not expected"; say what it is.
  if (argc >= 2 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& c : commands) {
      known = known || c.app->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + c.app->get_name();
    }
    if (!known) {
      fmt::print(stderr,
                 "mnist-mlp: error: unknown command '{}'; the commands are: {} (see {} --help)\n",
                 argv[1], names, argv[0]);
      return static_cast<int>(mlp::ExitCode::kUsage);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return finish_stdout(app.exit(e));
  } catch (const CLI::CallForAllHelp& e) {
    return finish_stdout(app.exit(e));
  } catch (const CLI::CallForVersion& e) {
    return finish_stdout(app.exit(e));
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message naming the flag, with our prefix
    return static_cast<int>(mlp::ExitCode::kUsage);
  }
  int rc = static_cast<int>(mlp::ExitCode::kUsage);
  try {
    for (auto& c : commands)
      if (c.app->parsed()) {
        rc = c.run();
        break;
      }
  } catch (const mlp::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: error: {}\n", e.what());
    rc = static_cast<int>(e.code());
  } catch (const std::system_error& e) {
    // fmt::print throws this when a write to stdout fails (a full disk).
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: error: {}\n", e.what());
    rc = static_cast<int>(mlp::ExitCode::kFailure);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: internal error: {}\n", e.what());
    rc = static_cast<int>(mlp::ExitCode::kFailure);
  }
  return finish_stdout(rc);
}
