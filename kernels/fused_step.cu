// The fused step kernel and its launcher (see fused_step.cuh). One cooperative launch runs
// args.steps steps; each step runs the plan's stages in order with a grid barrier between them.
//
// Why grid.sync() between stages, and counters inside them: a stage's consumers read tiles from
// many producers (a forward tile reads the input columns of every group of the layer before), so
// per-tile flags would have each block poll ~R x S flags where one barrier does; until the sync
// benchmark (kernels/experiments/fused_sync_bench.cu) says a grid barrier costs much more than
// ~1 us on the H200, 8 barriers per step are the simple choice. Inside a stage the partial sums
// of a group are handed to its last-arriving block by an integer counter, so no reduction costs
// a barrier. Swapping a barrier for flags later changes only this file's stage loop.
#include <cooperative_groups.h>

#include <cstdio>
#include <string>

#include "kernels/fused_step.cuh"
#include "kernels/fused_tiles.cuh"
#include "kernels/launch.cuh"

namespace mlp::kernels {
namespace {

namespace cg = cooperative_groups;
using fused::Op;
using fused::OpKind;
using fused::Plan;
using fused::StepArgs;

struct FusedParams {
  Plan plan;
  StepArgs args;
};

__device__ __forceinline__ void run_op(const fused_dev::Ctx& c, Op op) {
  const int32_t t = fused::block_tile(c.p, op, static_cast<int32_t>(blockIdx.x));
  if (t < 0) return;  // block-uniform
  const fused::Tile tile = fused::op_tile(c.p, op, t);
  switch (op.kind) {
    case OpKind::kForward:
      fused_dev::forward_tile(c, op.layer, tile);
      break;
    case OpKind::kDx:
      fused_dev::dx_tile(c, op.layer, tile);
      break;
    case OpKind::kDw:
      fused_dev::dw_tile(c, op.layer, tile);
      break;
  }
}

__global__ void __launch_bounds__(kFusedBlock, 1)
    fused_step_kernel(const __grid_constant__ FusedParams kp) {
  extern __shared__ float4 smem_raw[];  // float4: 16-byte aligned
  __shared__ fused::AdamScalars s_adam;
  const Plan& p = kp.plan;
  const StepArgs& a = kp.args;
  cg::grid_group grid = cg::this_grid();
  // Every block reads the step counter before the first barrier; block 0 advances it after.
  // A forward-only (evaluation) plan never touches the optimizer state.
  const bool train = p.forward_only == 0;
  const int64_t t0 =
      train ? static_cast<int64_t>(__ldcg(reinterpret_cast<const long long*>(&a.state->step))) : 0;
  fused_dev::Ctx c{p,
                   a,
                   0,
                   s_adam,
                   static_cast<int32_t*>(a.workspace),
                   static_cast<float*>(a.workspace) + p.counter_floats,
                   reinterpret_cast<float*>(smem_raw)};
  bool step_written = false;
  for (c.step = 0; c.step < a.steps; ++c.step) {
    if (train && threadIdx.x == 0) s_adam = fused::adam_scalars(*a.state, t0 + c.step + 1);
    __syncthreads();
    for (int32_t s = 0; s < p.stage_count; ++s) {
      for (int32_t i = 0; i < p.stage[s].op_count; ++i) run_op(c, p.stage[s].ops[i]);
      if (c.step + 1 < a.steps || s + 1 < p.stage_count) grid.sync();
      if (!step_written) {
        step_written = true;
        if (train && blockIdx.x == 0 && threadIdx.x == 0) a.state->step = t0 + a.steps;
      }
    }
  }
}

[[noreturn]] void refuse(const std::string& why) {
  throw Error(ExitCode::kDevice, "--engine fused: " + why);
}

}  // namespace

FusedLaunch fused_prepare(const int64_t* sizes, int32_t size_count, int64_t batch, bool binarize,
                          bool forward_only) {
  FusedLaunch launch{};
  MLP_CUDA_CHECK(cudaGetDevice(&launch.device));
  int coop = 0, sms = 0, optin = 0;
  MLP_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, launch.device));
  MLP_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, launch.device));
  MLP_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, launch.device));
  if (!coop)
    refuse("device " + std::to_string(launch.device) +
           " does not support cooperative launches, which the fused kernel's grid barriers need");
  cudaFuncAttributes attr{};
  MLP_CUDA_CHECK(cudaFuncGetAttributes(&attr, fused_step_kernel));  // also: is there an image?
  const int64_t budget = static_cast<int64_t>(optin) - static_cast<int64_t>(attr.sharedSizeBytes);
  const fused::Verdict v = fused::make_plan(
      {sizes, size_count, batch, sms, budget, binarize, forward_only}, &launch.plan);
  if (!v.ok) refuse(v.reason);
  launch.smem_bytes = static_cast<std::size_t>(launch.plan.smem_floats * 4);
  // The attribute belongs to the kernel, not to a plan: never lower it below what an earlier
  // plan (still in use, e.g. eval's full and remainder batches) was prepared for.
  const std::size_t smem_attr =
      launch.smem_bytes > static_cast<std::size_t>(attr.maxDynamicSharedSizeBytes)
          ? launch.smem_bytes
          : static_cast<std::size_t>(attr.maxDynamicSharedSizeBytes);
  MLP_CUDA_CHECK(cudaFuncSetAttribute(
      fused_step_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_attr)));
  MLP_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &launch.blocks_per_sm, fused_step_kernel, kFusedBlock, launch.smem_bytes));
  if (launch.blocks_per_sm < 1)
    refuse("one block of " + std::to_string(kFusedBlock) + " threads with " +
           std::to_string(launch.smem_bytes / 1024) +
           " KB of shared memory cannot stay resident "
           "on an SM of device " +
           std::to_string(launch.device));
  return launch;
}

void fused_step(const FusedLaunch& launch, const fused::StepArgs& args, cudaStream_t stream) {
  const bool train = launch.plan.forward_only == 0;
  if (args.steps < 1 || !args.images || !args.labels || !args.params || !args.metrics ||
      !args.workspace || (train && (!args.m || !args.v || !args.state)))
    throw Error(ExitCode::kFailure, "fused_step: missing buffer or steps < 1");
  FusedParams kp{launch.plan, args};
  void* kargs[] = {&kp};
  MLP_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(fused_step_kernel),
                                             dim3(static_cast<unsigned>(launch.plan.grid)),
                                             dim3(kFusedBlock), kargs, launch.smem_bytes, stream));
  MLP_CUDA_CHECK_LAUNCH("fused_step_kernel");
}

}  // namespace mlp::kernels
