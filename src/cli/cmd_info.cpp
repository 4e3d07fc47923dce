// mnist-mlp info: what this binary was built with and what it can run on.
#include <fmt/format.h>

#include "cli/commands.h"
#include "mlp/backend.h"

namespace mlp::cli {

Command add_info_command(CLI::App& root) {
  CLI::App* app =
      root.add_subcommand("info", "Print the build, the CPU GEMM library and the CUDA devices");
  return {app, [] {
            fmt::print("mnist-mlp {}\n", MLP_VERSION);
            fmt::print("CPU backend: {}\n", make_cpu_backend({})->describe());
            fmt::print("{}", cuda_report());
            return 0;
          }};
}

}  // namespace mlp::cli
