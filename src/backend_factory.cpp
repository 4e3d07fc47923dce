// Picks the backend for --device; the only place that decides CPU vs CUDA.
#include <fmt/format.h>

#include <cstdio>
#include <thread>

#include "cpu/cpu_topology.h"
#include "mlp/backend.h"
#include "mlp/error.h"

namespace mlp {

DeviceChoice parse_device(const std::string& s) {
  if (s == "auto") return DeviceChoice::kAuto;
  if (s == "cpu") return DeviceChoice::kCpu;
  if (s == "cuda") return DeviceChoice::kCuda;
  throw usage_error(fmt::format("--device: unknown device '{}' (expected auto, cpu or cuda)", s));
}

int resolve_cpu_threads(int requested) {
  return requested > 0 ? requested : cpu::physical_cores();  // not hyperthreads
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
  const std::string why = cuda_unavailable_reason();
  if (why.empty()) return make_cuda_backend(opt.cuda);
  // One line, so a user who expected the GPU knows at once why it is not used.
  if (!opt.quiet) fmt::print(stderr, "mnist-mlp: --device auto: using the CPU: {}\n", why);
  return make_cpu_backend(opt.cpu);
}

std::vector<std::unique_ptr<Backend>> make_all_backends(const BackendOptions& opt,
                                                        std::string* cuda_skipped) {
  std::vector<std::unique_ptr<Backend>> all;
  all.push_back(make_cpu_backend(opt.cpu));
  const std::string why = cuda_unavailable_reason();
  if (why.empty())
    all.push_back(make_cuda_backend(opt.cuda));
  else if (cuda_skipped)
    *cuda_skipped = why;
  return all;
}

}  // namespace mlp
