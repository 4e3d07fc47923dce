// The fused kernel behind the StepRunner seam (see fused_runner.h): device buffers of its own,
// its own stream, one cooperative launch per run(). Compiled only with CUDA.
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <memory>

#include "fused/fused_runner.h"
#include "kernels/cuda_check.cuh"
#include "kernels/fused_step.cuh"

namespace mlp::fused {
namespace {

struct CudaFree {
  void operator()(void* p) const { (void)cudaFree(p); }
};
using DevPtr = std::unique_ptr<void, CudaFree>;

// Every copy and memset below is issued on the runner's stream, in order with
// its launches: the stream is non-blocking, so it would not wait for plain
// cudaMemcpy/cudaMemset (legacy default stream), and a pageable-to-device
// cudaMemcpy may return before its DMA has landed. A pageable-to-device
// cudaMemcpyAsync returns once the source is staged, so the host buffer may
// change right after; a device-to-pageable one returns when the copy is done.
DevPtr dev_alloc(std::size_t bytes, cudaStream_t stream) {
  void* p = nullptr;
  MLP_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  MLP_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes == 0 ? 1 : bytes, stream));
  return DevPtr(p);
}

template <class T>
T* as(const DevPtr& p) {
  return static_cast<T*>(p.get());
}

class KernelRunner final : public StepRunner {
 public:
  KernelRunner(const std::vector<int64_t>& sizes, int64_t batch, bool binarize, bool forward_only)
      : launch_(kernels::fused_prepare(sizes.data(), static_cast<int32_t>(sizes.size()), batch,
                                       binarize, forward_only)) {
    plan_ = launch_.plan;
    MLP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const auto floats = static_cast<std::size_t>(plan_.param_floats) * sizeof(float);
    params_ = dev_alloc(floats, stream_);
    if (!forward_only) {
      m_ = dev_alloc(floats, stream_);
      v_ = dev_alloc(floats, stream_);
      state_ = dev_alloc(sizeof(OptimizerState), stream_);
    }
    metrics_ = dev_alloc(kMetricCount * sizeof(double), stream_);
    workspace_ = dev_alloc(static_cast<std::size_t>(workspace_bytes(plan_)), stream_);
  }
  ~KernelRunner() override {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }

  std::string describe() const override {
    return fmt::format("fused kernel on device {}: {} blocks x {} threads, {} KB shared memory",
                       launch_.device, plan_.grid, kernels::kFusedBlock, launch_.smem_bytes / 1024);
  }
  void set_data(const Dataset& data) override {
    synchronize();
    images_ = dev_alloc(data.images.size(), stream_);
    labels_ = dev_alloc(data.labels.size(), stream_);
    copy_to_device(images_.get(), data.images.data(), data.images.size());
    copy_to_device(labels_.get(), data.labels.data(), data.labels.size());
  }
  void set_order(const std::vector<int32_t>& order) override {
    synchronize();  // queued steps may still read the old order
    if (order.size() > order_size_) {
      order_ = dev_alloc(order.size() * sizeof(int32_t), stream_);
      order_size_ = order.size();
    }
    copy_to_device(order_.get(), order.data(), order.size() * sizeof(int32_t));
    order_count_ = static_cast<int64_t>(order.size());
  }
  void set_state(const ModelState& s, const AdamHyper& adam, const LrSchedule& schedule) override {
    check_size(s.params.size());
    check_trains();
    synchronize();
    upload(params_, s.params);
    upload(m_, s.m);
    upload(v_, s.v);
    OptimizerState st{};
    st.step = s.step;
    st.adam = adam;
    st.schedule = schedule;
    copy_to_device(state_.get(), &st, sizeof st);
  }
  ModelState state() override {
    check_trains();
    synchronize();
    ModelState s;
    s.params = download(params_);
    s.m = download(m_);
    s.v = download(v_);
    OptimizerState st{};
    copy_to_host(&st, state_.get(), sizeof st);
    s.step = st.step;
    return s;
  }
  void set_params(const std::vector<float>& params) override {
    check_size(params.size());
    synchronize();
    upload(params_, params);
  }
  void set_metrics(double loss_sum, double correct) override {
    synchronize();
    const double m[kMetricCount] = {loss_sum, correct};
    copy_to_device(metrics_.get(), m, sizeof m);
  }
  void metrics(double out[kMetricCount]) override {
    synchronize();
    copy_to_host(out, metrics_.get(), kMetricCount * sizeof(double));
  }
  void run(int64_t first, int64_t steps) override {
    if (!images_ || (first + steps) * plan_.batch > order_count_)
      throw Error(ExitCode::kFailure, "fused runner: steps beyond the order or no data");
    const StepArgs a{as<uint8_t>(images_),
                     as<uint8_t>(labels_),
                     as<int32_t>(order_) + first * plan_.batch,
                     steps,
                     as<float>(params_),
                     as<float>(m_),
                     as<float>(v_),
                     as<OptimizerState>(state_),
                     as<double>(metrics_),
                     workspace_.get(),
                     nullptr};
    kernels::fused_step(launch_, a, stream_);
  }
  std::vector<float> logits() override {
    synchronize();
    const LayerPlan& last = plan_.layer[plan_.layers - 1];
    std::vector<float> out(static_cast<std::size_t>(int64_t{plan_.batch} * last.fan_out));
    copy_to_host(out.data(), as<float>(workspace_) + plan_.counter_floats + last.act_off,
                 out.size() * sizeof(float));
    return out;
  }
  void synchronize() override { MLP_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  // A forward-only runner (evaluation) has no moments nor optimizer state.
  void check_trains() const {
    if (!state_) throw Error(ExitCode::kFailure, "fused runner: forward-only, no training state");
  }
  void check_size(std::size_t n) const {
    if (static_cast<int64_t>(n) != plan_.param_floats)
      throw Error(ExitCode::kFailure, "fused runner: parameter buffer of the wrong size");
  }
  void copy_to_device(void* dst, const void* src, std::size_t bytes) {
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) {
    MLP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize();  // the caller reads dst next, whatever kind of host memory it is
  }
  void upload(const DevPtr& dst, const std::vector<float>& src) {
    copy_to_device(dst.get(), src.data(), src.size() * sizeof(float));
  }
  std::vector<float> download(const DevPtr& src) {
    std::vector<float> out(static_cast<std::size_t>(plan_.param_floats));
    copy_to_host(out.data(), src.get(), out.size() * sizeof(float));
    return out;
  }

  kernels::FusedLaunch launch_;
  cudaStream_t stream_ = nullptr;
  DevPtr images_, labels_, order_, params_, m_, v_, state_, metrics_, workspace_;
  std::size_t order_size_ = 0;
  int64_t order_count_ = 0;
};

}  // namespace

std::unique_ptr<StepRunner> make_cuda_step_runner(const std::vector<int64_t>& sizes, int64_t batch,
                                                  bool binarize, bool forward_only) {
  return std::make_unique<KernelRunner>(sizes, batch, binarize, forward_only);
}

}  // namespace mlp::fused
