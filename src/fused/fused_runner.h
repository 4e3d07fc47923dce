// The fused engine's step runner: one plan (a shape, a batch, training or forward-only) and the
// buffers it runs over, on the CPU (the emulation, fused_emulation.h) or on the GPU (the kernel,
// kernels/fused_step.cuh). The FusedTrainer and the fused evaluation are written against this
// seam only, so `--engine fused --device cpu` runs the very loop the GPU runs, step by step,
// with the emulation in place of the launch. Everything a step reads stays where the runner
// keeps it (device memory on CUDA): the data set (uploaded once), the rows' visiting order
// (uploaded once per epoch), parameters, Adam moments, the step counter and the metrics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/fused_schedule.h"
#include "mlp/model.h"

namespace mlp::fused {

// The plan the CPU emulation runs: the one an H100/H200 (132 SMs, 227 KB of shared memory per
// block) gets, so the emulation's bits are the ones that device is meant to produce.
inline constexpr int32_t kEmulatedGrid = 132;
inline constexpr int64_t kEmulatedSmemBytes = 227 * 1024;

class StepRunner {
 public:
  virtual ~StepRunner() = default;
  const Plan& plan() const { return plan_; }
  virtual std::string describe() const = 0;  // e.g. "fused kernel, 132 blocks x 256 threads"

  // The rows the steps read from (count x inputs images, count labels), resident from now on.
  virtual void set_data(const Dataset& data) = 0;
  // The order rows are visited in: step s of run(first, ...) reads rows
  // order[(first + s) * batch + r]. Kept until the next call (once per epoch).
  virtual void set_order(const std::vector<int32_t>& order) = 0;
  // Training plans: parameters, moments, step and what Adam reads (hyperparameters, schedule).
  virtual void set_state(const ModelState& s, const AdamHyper& adam,
                         const LrSchedule& schedule) = 0;
  virtual ModelState state() = 0;  // blocks until queued steps are done
  // Forward-only plans read the parameters alone.
  virtual void set_params(const std::vector<float>& params) = 0;
  virtual void set_metrics(double loss_sum, double correct) = 0;
  virtual void metrics(double out[kMetricCount]) = 0;  // blocks
  // Queues `steps` steps (one launch) starting at step `first` of the order; never blocks
  // on the CPU emulation's behalf (it simply runs them) nor on the GPU.
  virtual void run(int64_t first, int64_t steps) = 0;
  // The last step's logits, (batch, classes) row-major; blocks.
  virtual std::vector<float> logits() = 0;
  virtual void synchronize() = 0;

 protected:
  Plan plan_{};
};

// The runner for `kind` (kCpu: the emulation; kCuda: the kernel on the current device).
// Throws Error(kDevice, "--engine fused: <reason>") when the shape or the device is not
// supported (too many layers, too little shared memory, no cooperative launch, ...).
std::unique_ptr<StepRunner> make_step_runner(BackendKind kind, const std::vector<int64_t>& sizes,
                                             int64_t batch, bool binarize, bool forward_only);

#ifdef MLP_WITH_CUDA
std::unique_ptr<StepRunner> make_cuda_step_runner(const std::vector<int64_t>& sizes, int64_t batch,
                                                  bool binarize, bool forward_only);
#endif

}  // namespace mlp::fused
