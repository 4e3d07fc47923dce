// Memory estimate before allocating (see memory_check.h). Device memory is not
// estimated here: the CUDA backend's allocation failure already names it.
#include "cli/memory_check.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

#include "mlp/error.h"

namespace mlp::cli {

uint64_t training_host_bytes(const std::vector<int64_t>& sizes, int64_t batch, BackendKind kind) {
  // In double: 64-bit products of 2^16-wide layers cannot overflow it meaningfully.
  double params = 0, units = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l)
    params += static_cast<double>(sizes[l] + 1) * static_cast<double>(sizes[l + 1]);
  for (int64_t s : sizes) units += static_cast<double>(s);
  // What training cannot start without: the initial parameters built on the host, and on
  // the CPU the model itself. Checkpoint copies come later and are not counted, so the
  // figure is a true lower bound.
  double bytes = 4 * params;
  if (kind == BackendKind::kCpu) bytes += 4 * (4 * params + 2 * static_cast<double>(batch) * units);
  return bytes >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(bytes);
}

uint64_t available_host_bytes() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string key;
    uint64_t kib = 0;
    if (ls >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

void check_training_memory(const std::vector<int64_t>& sizes, int64_t batch, BackendKind kind) {
  const uint64_t need = training_host_bytes(sizes, batch, kind);
  const uint64_t have = available_host_bytes();
  if (have == 0 || need <= have) return;
  throw usage_error(fmt::format(
      "--hidden {} with --batch-size {} needs at least {:.1f} GB of host memory ({} bytes: "
      "parameters, gradients, Adam moments, activations); {:.1f} GB ({} bytes) "
      "are available: use smaller layers or batches",
      [&] {
        std::string h;
        for (std::size_t i = 1; i + 1 < sizes.size(); ++i)
          h += (i > 1 ? "," : "") + std::to_string(sizes[i]);
        return h;
      }(),
      batch, static_cast<double>(need) / 1e9, need, static_cast<double>(have) / 1e9, have));
}

}  // namespace mlp::cli
