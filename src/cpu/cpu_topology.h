// How many physical cores this process may run on: the default thread count.
// Hyperthreads share a core's FMA units, so a second thread per core only adds
// synchronisation to GEMMs that already keep those units busy.
#pragma once

#include <set>
#include <string>

namespace mlp::cpu {

// Distinct physical cores among the CPUs in the process's affinity mask, read
// from /sys/devices/system/cpu/cpuN/topology (package id, core id); falls back
// to the CPUs in the mask, then to std::thread::hardware_concurrency, then 1.
int physical_cores();

// For tests: the cores among `cpus`, with topology read under `sys_cpu_dir`
// (a directory laid out like /sys/devices/system/cpu). A CPU whose topology is
// missing counts as a core of its own.
int count_physical_cores(const std::set<int>& cpus, const std::string& sys_cpu_dir);

}  // namespace mlp::cpu
