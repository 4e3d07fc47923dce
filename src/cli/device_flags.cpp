// The shared device flags (see device_flags.h).
#include "cli/device_flags.h"

namespace mlp::cli {

void add_device_flags(CLI::App* app, DeviceFlags& f, bool bench_choices) {
  if (bench_choices) {
    f.device = "all";
    app->add_option("--device", f.device, "all (the CPU, and CUDA when usable), cpu or cuda")
        ->capture_default_str()
        ->check(CLI::IsMember({"all", "cpu", "cuda"}));
  } else {
    app->add_option("--device", f.device, "auto (CUDA if a device is usable), cpu or cuda")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  }
  app->add_option("--threads", f.threads, "CPU threads for the GEMMs and loops (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  std::vector<std::string> gemms{"onednn", "openblas"};
  if (bench_choices) gemms.push_back("all");
  app->add_option("--cpu-gemm", f.cpu_gemm,
                  bench_choices ? "CPU GEMM library: onednn, openblas or all (one row each)"
                                : "CPU GEMM library: onednn or openblas")
      ->capture_default_str()
      ->check(CLI::IsMember(gemms));
  app->add_option("--denormals", f.denormals,
                  "CPU: flush (subnormal floats to zero, x86 FTZ+DAZ, as TensorFlow does: Intel "
                  "cores take a slow microcode assist on each, and Adam's moments of "
                  "always-zero gradients decay through them) or keep (IEEE gradual underflow)")
      ->capture_default_str()
      ->check(CLI::IsMember({"flush", "keep"}));
  app->add_flag("--tf32", f.tf32,
                "CUDA: allow TF32 tensor-core math in cuBLAS (default strict FP32)");
  app->add_option("--gemm", f.gemm,
                  "CUDA: cublas (cuBLAS SGEMM + the bias/ReLU kernels) or lt (cuBLASLt with the "
                  "bias/ReLU in the forward GEMM's epilogue, where its heuristics have one)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cublas", "lt"}));
}

BackendOptions backend_options(const DeviceFlags& f) {
  BackendOptions o;
  o.device = parse_device(f.device);
  o.cpu.threads = f.threads;
  o.cpu.gemm = parse_cpu_gemm(f.cpu_gemm);  // Error(kUsage) for onednn in a build without it
  o.cpu.flush_denormals = f.denormals == "flush";
  o.cuda.tf32 = f.tf32;
  o.cuda.gemm_lt = f.gemm == "lt";
  return o;
}

}  // namespace mlp::cli
