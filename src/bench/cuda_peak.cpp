// cuda_peak: the device's nominal FP32 peak and memory bandwidth from its
// attributes (built only with CUDA). FP32 lanes per SM are not an attribute, so
// they come from the compute capability (CUDA C Programming Guide, "Arithmetic
// Instructions" throughput table); the source string says which were used.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include "mlp/bench.h"
#include "mlp/error.h"

namespace mlp {
namespace {

int attribute(cudaDeviceAttr a, int device) {
  int v = 0;
  const cudaError_t e = cudaDeviceGetAttribute(&v, a, device);
  if (e != cudaSuccess)
    throw device_error(fmt::format("cuda_peak: cudaDeviceGetAttribute({}) failed: {}",
                                   static_cast<int>(a), cudaGetErrorString(e)));
  return v;
}

// FP32 FMA lanes per SM; 0 when this table does not know the architecture.
int fp32_lanes_per_sm(int major, int minor) {
  if (major == 6) return minor == 0 ? 64 : 128;
  if (major == 7) return 64;                     // Volta, Turing
  if (major == 8) return minor == 0 ? 64 : 128;  // A100: 64; GA10x, Ada: 128
  if (major >= 9) return 128;                    // Hopper, Blackwell
  return 0;
}

}  // namespace

PeakInfo cuda_peak(int device) {
  const int sms = attribute(cudaDevAttrMultiProcessorCount, device);
  const int major = attribute(cudaDevAttrComputeCapabilityMajor, device);
  const int minor = attribute(cudaDevAttrComputeCapabilityMinor, device);
  const double clock_khz = attribute(cudaDevAttrClockRate, device);
  const double mem_khz = attribute(cudaDevAttrMemoryClockRate, device);
  const double bus_bits = attribute(cudaDevAttrGlobalMemoryBusWidth, device);
  PeakInfo p;
  const int lanes = fp32_lanes_per_sm(major, minor);
  p.gflops = 2.0 * sms * lanes * clock_khz * 1e3 / 1e9;
  p.gbps = 2.0 * mem_khz * 1e3 * (bus_bits / 8) / 1e9;  // DDR: two transfers per clock
  p.source = lanes == 0
                 ? fmt::format("unknown: sm_{}{} is not in the FP32 lane table", major, minor)
                 : fmt::format(
                       "nominal: {} SMs x {} FP32 lanes x 2 x {:.0f} MHz (sm_{}{}); "
                       "bandwidth 2 x {:.0f} MHz x {:.0f}-bit bus",
                       sms, lanes, clock_khz / 1e3, major, minor, mem_khz / 1e3, bus_bits);
  return p;
}

}  // namespace mlp
