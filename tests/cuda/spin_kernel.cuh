// Device work of a known minimum duration, for the GPU tests that must prove
// an ordering or a timing (a fence that really waits, timestamps that really
// measure): one thread spins until its SM has counted enough cycles that, even
// at the device's peak clock, at least `min_ms` milliseconds have passed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mlp::cuda_testing {

// What one spin measured on the device (filled in by spin_for).
struct SpinResult {
  uint64_t cycles = 0;     // clock64() cycles the thread spun
  uint64_t global_ns = 0;  // %globaltimer nanoseconds over the same loop
  double min_ms = 0;       // the guaranteed minimum: cycles / peak clock
};

// Queues the spin on `stream` and returns at once. `result`, when given, is
// device memory for one SpinResult-sized record, written when the spin ends.
// Throws mlp::Error(kDevice) when the launch fails.
void spin_for(double min_ms, cudaStream_t stream, SpinResult* result = nullptr);

}  // namespace mlp::cuda_testing
