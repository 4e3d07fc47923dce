// Picks the backend for --device; the only place that decides CPU vs CUDA.
#include <fmt/format.h>

#include "mlp/backend.h"
#include "mlp/error.h"

namespace mlp {

DeviceChoice parse_device(const std::string& s) {
  if (s == "auto") return DeviceChoice::kAuto;
  if (s == "cpu") return DeviceChoice::kCpu;
  if (s == "cuda") return DeviceChoice::kCuda;
  throw usage_error(fmt::format("--device: unknown device '{}' (expected auto, cpu or cuda)", s));
}

std::unique_ptr<Backend> make_backend(const BackendOptions& opt) {
  switch (opt.device) {
    case DeviceChoice::kCpu:
      return make_cpu_backend(opt.cpu);
    case DeviceChoice::kCuda:
      return make_cuda_backend(opt.cuda);  // throws with the reason when unusable
    case DeviceChoice::kAuto:
      break;
  }
  if (cuda_unavailable_reason().empty()) return make_cuda_backend(opt.cuda);
  return make_cpu_backend(opt.cpu);
}

}  // namespace mlp
