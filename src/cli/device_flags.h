// The flags every command that computes shares: --device, --threads,
// --cpu-gemm, --denormals, --tf32, --gemm.
// One helper adds them with the same names, help and checks everywhere, and
// turns them into BackendOptions for the backend factory, which alone decides
// CPU vs CUDA.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mlp/backend.h"

namespace mlp::cli {

struct DeviceFlags {
  std::string device = "auto";  // auto|cpu|cuda, or all|cpu|cuda for bench
  int threads = 0;              // CPU threads, 0: all cores
  bool tf32 = false;            // CUDA: TF32 tensor-core math in cuBLAS
  // CPU GEMM library: onednn|openblas (default: oneDNN where built), bench also
  // takes all (one CPU row per library)
  std::string cpu_gemm = cpu_gemm_name(CpuGemm::kDefault);
  std::string gemm = "cublas";      // CUDA: cublas | lt (forward GEMMs with cuBLASLt epilogues)
  std::string denormals = "flush";  // CPU: flush | keep subnormal floats (src/cpu/denormals.h)
};

// bench_choices: --device all|cpu|cuda (default all: every usable backend)
// instead of auto|cpu|cuda (default auto), and --cpu-gemm also takes all.
void add_device_flags(CLI::App* app, DeviceFlags& f, bool bench_choices = false);
// For --device auto|cpu|cuda ("all" is bench's own, see make_all_backends).
BackendOptions backend_options(const DeviceFlags& f);

}  // namespace mlp::cli
