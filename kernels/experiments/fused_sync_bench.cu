// The three synchronisation costs that decide the fused engine's design (docs/fused-engine.md),
// on one GPU, printed in microseconds per operation: grid.sync() of a cooperative kernel with
// one block per SM; a thread-block-cluster barrier (sizes 2..8, sm_90); a flag hand-off between
// two SMs (producer writes, releases a flag; consumer spins, acquires); plus a dependent device-
// scope atomic (the fused kernel's last-arrival counter) and the launch costs for comparison.
// Standalone: no project headers. Build and run (H100/H200):
//   nvcc -std=c++17 -O3 -arch=sm_90 kernels/experiments/fused_sync_bench.cu -o fused_sync_bench
//   ./fused_sync_bench
// Each cost is (time of N2 iterations - time of N1) / (N2 - N1), so launch overhead cancels.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cuda/atomic>

namespace cg = cooperative_groups;

#define CHECK(x)                                                                               \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

constexpr int kThreads = 256;

__global__ void empty_kernel() {}

__global__ void grid_sync_kernel(int iters) {
  cg::grid_group grid = cg::this_grid();
  for (int i = 0; i < iters; ++i) grid.sync();
}

__global__ void cluster_sync_kernel(int iters, float* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::cluster_group cluster = cg::this_cluster();
  __shared__ float part[kThreads];
  float acc = 0.0f;
  for (int i = 0; i < iters; ++i) {
    part[threadIdx.x] = static_cast<float>(i + threadIdx.x);
    cluster.sync();
    // read the next block's shared memory: what a DSMEM reduction of partials would do
    const float* other =
        cluster.map_shared_rank(part, (cluster.block_rank() + 1) % cluster.num_blocks());
    acc += other[threadIdx.x];
    cluster.sync();
  }
  if (acc == -1.0f) *sink = acc;  // keep the loop
#else
  (void)iters;
  (void)sink;
#endif
}

// Block 0 and block 1 (on different SMs: each needs more than half an SM's shared memory)
// pass a token back and forth: one round trip = two hand-offs.
__global__ void ping_pong_kernel(int iters, unsigned* flag, float* data) {
  extern __shared__ float pad[];
  if (threadIdx.x != 0) return;
  pad[0] = 0.0f;
  cuda::atomic_ref<unsigned, cuda::thread_scope_device> f(*flag);
  for (int i = 0; i < iters; ++i) {
    if (blockIdx.x == 0) {
      data[i & 1023] = static_cast<float>(i);  // the payload
      f.store(2u * i + 1u, cuda::memory_order_release);
      while (f.load(cuda::memory_order_acquire) != 2u * i + 2u) {
      }
    } else {
      while (f.load(cuda::memory_order_acquire) != 2u * i + 1u) {
      }
      data[1024 + (i & 1023)] = data[i & 1023];
      f.store(2u * i + 2u, cuda::memory_order_release);
    }
  }
}

// One thread, dependent acq_rel fetch_adds: the latency of a counter arrival.
__global__ void atomic_chain_kernel(int iters, int* counter) {
  cuda::atomic_ref<int, cuda::thread_scope_device> c(*counter);
  int v = 0;
  for (int i = 0; i < iters; ++i) v = c.fetch_add(1, cuda::memory_order_acq_rel);
  if (v == -1) *counter = 0;
}

template <class Launch>
double per_op_us(Launch launch, int n1, int n2) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  launch(n1);  // warm-up
  CHECK(cudaDeviceSynchronize());
  float ms[2];
  int ns[2] = {n1, n2};
  for (int k = 0; k < 2; ++k) {
    float best = 1e30f;
    for (int rep = 0; rep < 5; ++rep) {
      CHECK(cudaEventRecord(a));
      launch(ns[k]);
      CHECK(cudaEventRecord(b));
      CHECK(cudaEventSynchronize(b));
      float t = 0;
      CHECK(cudaEventElapsedTime(&t, a, b));
      if (t < best) best = t;
    }
    ms[k] = best;
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return (ms[1] - ms[0]) * 1000.0 / (n2 - n1);
}

int main() {
  int dev = 0, sms = 0, coop = 0, smem_sm = 0;
  CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
  CHECK(cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  std::printf("%s: %d SMs, cc %d.%d, cooperative launch %s\n", prop.name, sms, prop.major,
              prop.minor, coop ? "yes" : "no");

  const double launch_us = per_op_us(
      [](int n) {
        for (int i = 0; i < n; ++i) empty_kernel<<<1, 32>>>();
      },
      100, 1100);
  std::printf("empty kernel launch (back to back)       %8.3f us\n", launch_us);
  const double coop_launch_us = per_op_us(
      [&](int n) {
        int iters = 0;
        void* args[] = {&iters};
        for (int i = 0; i < n; ++i)
          CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(grid_sync_kernel),
                                            dim3(sms), dim3(kThreads), args, 0, nullptr));
      },
      100, 1100);
  std::printf("cooperative launch, %3d blocks, no sync  %8.3f us\n", sms, coop_launch_us);

  if (coop) {
    const double us = per_op_us(
        [&](int n) {
          void* args[] = {&n};
          CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(grid_sync_kernel),
                                            dim3(sms), dim3(kThreads), args, 0, nullptr));
        },
        1000, 11000);
    std::printf("grid.sync(), %3d blocks x %d threads    %8.3f us\n", sms, kThreads, us);
  }

  float* sink = nullptr;
  CHECK(cudaMalloc(&sink, 4096 * sizeof(float)));
  if (prop.major >= 9) {
    for (int cluster : {2, 4, 8}) {
      cudaLaunchConfig_t cfg{};
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = static_cast<unsigned>(cluster);
      attr[0].val.clusterDim.y = 1;
      attr[0].val.clusterDim.z = 1;
      cfg.gridDim = dim3(static_cast<unsigned>(sms / cluster * cluster));
      cfg.blockDim = dim3(kThreads);
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      const double us =
          per_op_us([&](int n) { CHECK(cudaLaunchKernelEx(&cfg, cluster_sync_kernel, n, sink)); },
                    1000, 11000);
      std::printf("cluster of %d: sync + DSMEM read + sync  %8.3f us (per pair: %.3f us/barrier)\n",
                  cluster, us, us / 2);
    }
  } else {
    std::printf("thread-block clusters need compute capability 9.0; skipped\n");
  }

  unsigned* flag = nullptr;
  CHECK(cudaMalloc(&flag, sizeof(unsigned)));
  const std::size_t big = static_cast<std::size_t>(smem_sm) / 2 + 1024;  // one block per SM
  CHECK(cudaFuncSetAttribute(ping_pong_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(big)));
  const double rt = per_op_us(
      [&](int n) {
        CHECK(cudaMemset(flag, 0, sizeof(unsigned)));
        void* args[] = {&n, &flag, &sink};
        CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(ping_pong_kernel), dim3(2),
                                          dim3(32), args, big, nullptr));
      },
      1000, 11000);
  std::printf("flag hand-off between two SMs (one way)  %8.3f us\n", rt / 2);

  int* counter = nullptr;
  CHECK(cudaMalloc(&counter, sizeof(int)));
  const double at =
      per_op_us([&](int n) { atomic_chain_kernel<<<1, 1>>>(n, counter); }, 1000, 11000);
  std::printf("dependent device-scope acq_rel atomic    %8.3f us\n", at);

  CHECK(cudaFree(counter));
  CHECK(cudaFree(flag));
  CHECK(cudaFree(sink));
  return 0;
}
