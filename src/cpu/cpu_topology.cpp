// physical_cores: see cpu_topology.h.
#include "cpu/cpu_topology.h"

#include <sched.h>

#include <fstream>
#include <thread>
#include <utility>

namespace mlp::cpu {
namespace {

bool read_int(const std::string& path, int* out) {
  std::ifstream f(path);
  return static_cast<bool>(f >> *out);
}

}  // namespace

int count_physical_cores(const std::set<int>& cpus, const std::string& sys_cpu_dir) {
  std::set<std::pair<int, int>> cores;  // (package, core)
  int alone = 0;
  for (int cpu : cpus) {
    const std::string topo = sys_cpu_dir + "/cpu" + std::to_string(cpu) + "/topology/";
    int package = 0, core = 0;
    if (read_int(topo + "physical_package_id", &package) && read_int(topo + "core_id", &core))
      cores.insert({package, core});
    else
      ++alone;
  }
  return static_cast<int>(cores.size()) + alone;
}

int physical_cores() {
  std::set<int> cpus;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mask)) cpus.insert(c);
  if (!cpus.empty()) {
    const int n = count_physical_cores(cpus, "/sys/devices/system/cpu");
    if (n > 0) return n;
  }
  const auto hw = static_cast<int>(std::thread::hardware_concurrency());
  return hw > 0 ? hw : 1;
}

}  // namespace mlp::cpu
