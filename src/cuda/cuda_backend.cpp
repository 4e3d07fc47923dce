// CudaBackend: the Backend seam on an NVIDIA GPU. Every op, memset and graph
// replay runs in issue order on one compute stream (cuBLAS SGEMM for the
// GEMMs, kernels/ for the rest); upload_async copies from pinned staging
// memory on a separate copy stream, and events hand each batch over in both
// directions. Only download(), synchronize(), wait_fence() and elapsed_ms()
// block the host; alloc() blocks too, but is never called inside a step.
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nvtx3/nvToolsExt.h>

#include <array>
#include <climits>
#include <cstring>

#include "cuda/cublas_api.h"     // defines: cublas(), the dlopen'd cuBLAS
#include "cuda/cublas_check.h"   // defines: MLP_CUBLAS_CHECK (and MLP_CUDA_CHECK)
#include "cuda/cublas_handle.h"  // defines: create_cublas, warm_up_cublas
#include "cuda/cuda_graph.h"     // defines: capture_graph, launch_graph
#include "cuda/cuda_info.h"      // defines: device_problem
#include "cuda/cuda_memory.h"    // defines: alloc_device_zeroed, alloc_pinned_zeroed, free_*
#include "cuda/cuda_stream.h"    // defines: compute_stream (for tests)
#include "cuda/lt_gemm.h"        // defines: LtGemm (--gemm lt)
#include "kernels/adam.cuh"
#include "kernels/bias_grad.cuh"
#include "kernels/elementwise.cuh"  // defines: u8_to_float, bias_relu_forward, bias_forward, ...
#include "kernels/relu_bias_grad.cuh"
#include "kernels/softmax_xent.cuh"
#include "mlp/backend.h"
#include "mlp/error.h"

namespace mlp {
namespace {

// Events for record_compute_event / upload_async fences, indexed id % kEventPool.
// Assumption: a caller waits only on ids among the last kEventPool of their
// kind (the trainer keeps ~10 in flight: 4 staging slots, 2 input slots). An
// older id's event has since been re-recorded later on the SAME stream, so
// waiting on it is still correct, just possibly longer than needed.
constexpr uint64_t kEventPool = 64;
// 32 MiB: cuBLAS's recommended workspace on Hopper (4 MiB suffices elsewhere).
// With a user workspace set, cuBLAS never allocates, so graph capture is safe.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(ExitCode::kDevice, fmt::format("cuBLAS: {} = {} does not fit an int", what, v));
  return static_cast<int>(v);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& opt)
      : device_(opt.device), tf32_(opt.tf32), gemm_lt_(opt.gemm_lt) {
    try {
      init();
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  BackendKind kind() const override { return BackendKind::kCuda; }
  std::string describe() const override { return describe_; }
  cudaStream_t compute_stream() const { return compute_; }

  void push_range(const char* name) override { nvtxRangePushA(name); }
  void pop_range() override { nvtxRangePop(); }
  void profiler_start() override { MLP_CUDA_CHECK(cudaProfilerStart()); }
  void profiler_stop() override { MLP_CUDA_CHECK(cudaProfilerStop()); }

 protected:
  // ---- memory ---------------------------------------------------------------
  void* alloc_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override {
    void* p = cuda::alloc_device_zeroed(device_, bytes, compute_);
    *free_fn = cuda::free_device;
    return p;
  }
  void* alloc_host_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override {
    void* p = cuda::alloc_pinned_zeroed(bytes);
    *free_fn = cuda::free_pinned;
    return p;
  }

  void upload_impl(void* dst, const void* src, std::size_t bytes) override {
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_));
    MLP_CUDA_CHECK(cudaStreamSynchronize(compute_));
  }
  void download_impl(void* dst, const void* src, std::size_t bytes) override {
    // On the compute stream: waits for every queued op, including the copy
    // stream's uploads that the compute stream was told to wait for.
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_));
    MLP_CUDA_CHECK(cudaStreamSynchronize(compute_));
  }
  void synchronize_impl() override {
    MLP_CUDA_CHECK(cudaStreamSynchronize(copy_));
    MLP_CUDA_CHECK(cudaStreamSynchronize(side_));
    MLP_CUDA_CHECK(cudaStreamSynchronize(compute_));
  }

  // ---- streaming --------------------------------------------------------------
  uint64_t record_compute_event_impl() override {
    const uint64_t id = ++compute_ids_;
    MLP_CUDA_CHECK(cudaEventRecord(compute_events_[id % kEventPool], compute_));
    return id;
  }

  uint64_t upload_async_impl(void* dst, const void* src, std::size_t bytes,
                             uint64_t after) override {
    if (after > compute_ids_)
      throw Error(ExitCode::kFailure,
                  fmt::format("upload_async: compute event {} was never recorded", after));
    // The copy must not overwrite data that queued compute work still reads.
    if (after != 0)
      MLP_CUDA_CHECK(cudaStreamWaitEvent(copy_, compute_events_[after % kEventPool], 0));
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_));
    const uint64_t id = ++fence_ids_;
    cudaEvent_t done = copy_events_[id % kEventPool];
    MLP_CUDA_CHECK(cudaEventRecord(done, copy_));
    // Compute issued from now on sees the copied bytes.
    MLP_CUDA_CHECK(cudaStreamWaitEvent(compute_, done, 0));
    return id;
  }

  void wait_fence_impl(uint64_t fence) override {
    if (fence == 0) return;
    // Runs on the BatchStream loader thread. A failure here means the CUDA
    // context is already broken (a sticky error), which the training thread
    // reports at its next checked call; throwing on this thread would only
    // terminate the process without a message.
    (void)cudaEventSynchronize(copy_events_[fence % kEventPool]);
  }

  // On the compute stream, so the copy sees every step issued before it; the
  // host only queries the event (cudaEventQuery never blocks).
  uint64_t download_async_impl(void* dst, const void* src, std::size_t bytes) override {
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_));
    const uint64_t id = ++download_ids_;
    MLP_CUDA_CHECK(cudaEventRecord(download_events_[id % kDownloadRing], compute_));
    return id;
  }
  bool download_ready_impl(uint64_t id) override {
    if (id == 0 || id > download_ids_ || download_ids_ - id >= kDownloadRing)
      throw Error(ExitCode::kFailure,
                  fmt::format("download_ready: download {} is not among the last {} queued", id,
                              kDownloadRing));
    const cudaError_t e = cudaEventQuery(download_events_[id % kDownloadRing]);
    if (e == cudaErrorNotReady) return false;
    MLP_CUDA_CHECK(e);
    return true;
  }

  // ---- timing -------------------------------------------------------------------
  uint64_t record_timestamp_impl() override {
    const uint64_t id = ++timestamp_ids_;
    MLP_CUDA_CHECK(cudaEventRecord(timestamps_[id % kTimestampRing], compute_));
    return id;
  }
  double elapsed_ms_impl(uint64_t from, uint64_t to) override {
    for (uint64_t id : {from, to})
      if (id == 0 || id > timestamp_ids_ || timestamp_ids_ - id >= kTimestampRing)
        throw Error(ExitCode::kFailure,
                    fmt::format("elapsed_ms: timestamp {} is not among the last {} recorded", id,
                                kTimestampRing));
    cudaEvent_t a = timestamps_[from % kTimestampRing], b = timestamps_[to % kTimestampRing];
    MLP_CUDA_CHECK(cudaEventSynchronize(a));
    MLP_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.0f;
    MLP_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return static_cast<double>(ms);
  }

  // ---- graphs ---------------------------------------------------------------------
  std::unique_ptr<Graph> capture_impl(const std::function<void()>& step) override {
    return cuda::capture_graph(compute_, step);
  }
  void replay_impl(Graph& g) override { cuda::launch_graph(g, compute_); }

  // ---- ops --------------------------------------------------------------------------
  void gemm_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) override {
    // Row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T: the
    // row-major buffers already are those transposes, so swap a and b.
    const int m = to_int(c.rows, "m"), n = to_int(c.cols, "n");
    const int k = to_int(ta == Trans::kNo ? a.cols : a.rows, "k");
    MLP_CUBLAS_CHECK(
        cuda::cublas().cublasSgemm(lane_cublas(), tb == Trans::kNo ? CUBLAS_OP_N : CUBLAS_OP_T,
                                   ta == Trans::kNo ? CUBLAS_OP_N : CUBLAS_OP_T, n, m, k, &alpha,
                                   b.data, to_int(b.cols, "ldb"), a.data, to_int(a.cols, "lda"),
                                   &beta, c.data, to_int(c.cols, "ldc")));
  }
  void u8_to_float_impl(const uint8_t* in, Mat out, bool binarize) override {
    kernels::u8_to_float(in, out.data, out.size(), binarize, stream());
  }
  void bias_relu_forward_impl(Mat z, const float* bias) override {
    kernels::bias_relu_forward(z.data, bias, z.rows, z.cols, stream());
  }
  void bias_forward_impl(Mat z, const float* bias) override {
    kernels::bias_forward(z.data, bias, z.rows, z.cols, stream());
  }
  void relu_backward_impl(Mat grad, CMat act) override {
    kernels::relu_backward(grad.data, act.data, grad.size(), stream());
  }
  void bias_grad_impl(CMat grad, float* db) override {
    kernels::bias_grad(grad.data, db, grad.rows, grad.cols, stream());
  }
  void softmax_xent_impl(CMat logits, const uint8_t* labels, float* dlogits,
                         double* metrics) override {
    kernels::softmax_xent_grid(logits.data, labels, dlogits, nullptr, metrics, nullptr, logits.rows,
                               logits.cols, softmax_ws(), stream());
  }
  void adam_step_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                      OptimizerState* state) override {
    kernels::adam_step(params, grads, m, v, n, state, stream());
  }

  // The step plan's fused ops.
  void relu_backward_bias_grad_impl(Mat grad, CMat act, float* db) override {
    kernels::relu_backward_bias_grad(grad.data, act.data, db, grad.rows, grad.cols, stream());
  }
  void softmax_xent_backward_impl(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                                  double* metrics, OptimizerState* step_counter) override {
    kernels::softmax_xent_grid(logits.data, labels, dlogits.data, db, metrics, step_counter,
                               logits.rows, logits.cols, softmax_ws(), stream());
  }
  void adam_update_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                        const OptimizerState* state) override {
    kernels::adam_update(params, grads, m, v, n, state, stream());
  }

  // --gemm lt: cuBLASLt with the epilogue, else (no algorithm, or the side
  // lane, whose workspace Lt does not share) cuBLAS + the bias kernel.
  bool fuses_gemm_epilogue() const override { return lt_ != nullptr; }
  void gemm_bias_act_impl(CMat x, CMat w, const float* bias, bool relu, Mat out) override {
    if (lt_ && lane_now_ == 0 &&
        lt_->run(x.data, w.data, bias, out.data, to_int(out.rows, "m"), to_int(out.cols, "n"),
                 to_int(x.cols, "k"), relu, stream()))
      return;
    Backend::gemm_bias_act_impl(x, w, bias, relu, out);
  }

  // ---- lanes --------------------------------------------------------------------------
  // Lane 1 is side_, with its own cuBLAS handle and workspace (two streams must
  // never share one workspace). Events come from a pool indexed id % kEventPool;
  // a step plan records about ten, so an id is never reused while it is awaited.
  void select_lane_impl(int lane) override { lane_now_ = lane; }
  uint64_t record_lane_event_impl() override {
    const uint64_t id = ++lane_ids_;
    MLP_CUDA_CHECK(cudaEventRecord(lane_events_[id % kEventPool], stream()));
    return id;
  }
  void wait_lane_event_impl(uint64_t id) override {
    if (id == 0 || id > lane_ids_ || lane_ids_ - id >= kEventPool)
      throw Error(ExitCode::kFailure,
                  fmt::format("wait_lane_event: event {} is not among the last {} recorded", id,
                              kEventPool));
    MLP_CUDA_CHECK(cudaStreamWaitEvent(stream(), lane_events_[id % kEventPool], 0));
  }

 private:
  cudaStream_t stream() const { return lane_now_ == 0 ? compute_ : side_; }
  cublasHandle_t lane_cublas() const { return lane_now_ == 0 ? cublas_ : cublas_side_; }
  // Only lane 0 runs the loss (the plan puts it there); the check keeps it so.
  kernels::SoftmaxXentWorkspace softmax_ws() const {
    if (lane_now_ != 0)
      throw Error(ExitCode::kFailure, "softmax_xent: runs on lane 0 only (its workspace is there)");
    return kernels::softmax_xent_workspace(softmax_ws_.data());
  }

  // A cuBLAS handle on `stream` with its own workspace, math mode as --tf32 says.
  void make_cublas(cublasHandle_t* handle, cudaStream_t stream, Buffer* workspace) {
    Buffer::FreeFn free_fn = nullptr;
    void* ws = alloc_impl(kCublasWorkspaceBytes, &free_fn);
    *workspace = Buffer(ws, kCublasWorkspaceBytes, free_fn);
    *handle = cuda::create_cublas(stream, workspace->data(), kCublasWorkspaceBytes, tf32_);
  }

  void init() {
    MLP_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    MLP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    // Non-blocking: no implicit sync with the legacy default stream, which a
    // library could otherwise use behind our back.
    MLP_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    MLP_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    for (auto& e : compute_events_)
      MLP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    // The loader thread waits on these: blocking sync sleeps instead of spinning a core.
    for (auto& e : copy_events_)
      MLP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));
    for (auto& e : timestamps_) MLP_CUDA_CHECK(cudaEventCreate(&e));
    for (auto& e : download_events_)
      MLP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));

    MLP_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    for (auto& e : lane_events_)
      MLP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    make_cublas(&cublas_, compute_, &workspace_);
    make_cublas(&cublas_side_, side_, &workspace_side_);
    {
      Buffer::FreeFn free_fn = nullptr;
      const std::size_t bytes = kernels::softmax_xent_workspace_bytes();
      void* p = alloc_impl(bytes, &free_fn);
      softmax_ws_ = Buffer(p, bytes, free_fn);
    }
    warm_up_cublas();
    if (gemm_lt_)
      lt_ = std::make_unique<cuda::LtGemm>(tf32_, workspace_.data(), kCublasWorkspaceBytes);

    int cublas_version = 0;
    MLP_CUBLAS_CHECK(cuda::cublas().cublasGetVersion(cublas_, &cublas_version));
    describe_ =
        fmt::format("cuda: {} (device {}, sm_{}{}, {} SMs, {:.1f} GiB), cuBLAS {}.{}.{}, {} GEMM{}",
                    prop.name, device_, prop.major, prop.minor, prop.multiProcessorCount,
                    static_cast<double>(prop.totalGlobalMem) / (1 << 30), cublas_version / 10000,
                    cublas_version / 100 % 100, cublas_version % 100, tf32_ ? "TF32" : "FP32",
                    gemm_lt_ ? ", cuBLASLt bias/ReLU epilogues (--gemm lt)" : "");
  }

  void warm_up_cublas() {
    Buffer::FreeFn free_fn = nullptr;
    void* p = alloc_impl(cuda::kWarmUpScratchBytes, &free_fn);
    const Buffer scratch(p, cuda::kWarmUpScratchBytes, free_fn);
    cuda::warm_up_cublas(cublas_, compute_, scratch.as<float>());
    cuda::warm_up_cublas(cublas_side_, side_, scratch.as<float>());
  }

  void release() noexcept {
    // Never throws: each handle is destroyed if it was created, errors ignored.
    if (compute_) (void)cudaStreamSynchronize(compute_);
    if (copy_) (void)cudaStreamSynchronize(copy_);
    if (side_) (void)cudaStreamSynchronize(side_);
    lt_.reset();
    if (cublas_) (void)cuda::cublas().cublasDestroy(cublas_);
    if (cublas_side_) (void)cuda::cublas().cublasDestroy(cublas_side_);
    cublas_ = cublas_side_ = nullptr;
    workspace_.reset();
    workspace_side_.reset();
    softmax_ws_.reset();
    for (auto* pool : {&compute_events_, &copy_events_, &lane_events_})
      for (auto& e : *pool)
        if (e) (void)cudaEventDestroy(std::exchange(e, nullptr));
    for (auto& e : timestamps_)
      if (e) (void)cudaEventDestroy(std::exchange(e, nullptr));
    for (auto& e : download_events_)
      if (e) (void)cudaEventDestroy(std::exchange(e, nullptr));
    if (compute_) (void)cudaStreamDestroy(std::exchange(compute_, nullptr));
    if (copy_) (void)cudaStreamDestroy(std::exchange(copy_, nullptr));
    if (side_) (void)cudaStreamDestroy(std::exchange(side_, nullptr));
  }

  int device_;
  bool tf32_;
  bool gemm_lt_;
  std::unique_ptr<cuda::LtGemm> lt_;  // --gemm lt
  std::string describe_;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaStream_t side_ = nullptr;  // lane 1
  int lane_now_ = 0;
  cublasHandle_t cublas_ = nullptr;
  cublasHandle_t cublas_side_ = nullptr;
  Buffer workspace_, workspace_side_, softmax_ws_;
  std::array<cudaEvent_t, kEventPool> lane_events_{};
  uint64_t lane_ids_ = 0;
  std::array<cudaEvent_t, kEventPool> compute_events_{};
  std::array<cudaEvent_t, kEventPool> copy_events_{};
  std::array<cudaEvent_t, kTimestampRing> timestamps_{};
  std::array<cudaEvent_t, kDownloadRing> download_events_{};
  uint64_t compute_ids_ = 0;
  uint64_t fence_ids_ = 0;
  uint64_t timestamp_ids_ = 0;
  uint64_t download_ids_ = 0;
};

}  // namespace

cudaStream_t cuda::compute_stream(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda) throw Error(ExitCode::kFailure, "compute_stream: not a CUDA backend");
  return cuda->compute_stream();
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opt) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) throw device_error("--device cuda: " + reason);
  int count = 0;
  MLP_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (opt.device < 0 || opt.device >= count)
    throw device_error(fmt::format("CUDA device {} does not exist ({} device{} present)",
                                   opt.device, count, count == 1 ? "" : "s"));
  // cuda_unavailable_reason() probed device 0; the chosen device may differ.
  const std::string problem = cuda::device_problem(opt.device);
  if (!problem.empty()) throw device_error("--device cuda: " + problem);
  return std::make_unique<CudaBackend>(opt);
}

}  // namespace mlp
