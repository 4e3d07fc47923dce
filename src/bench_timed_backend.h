// TimedBackend: a Backend that forwards everything to another one and, while
// timing is on, brackets every gemm with the inner backend's timestamps, so the
// bench can split a phase into "GEMM" and "everything else" without touching
// Model. With timing off it only adds one virtual call per op; graph capture
// must happen with timing off (timestamps are not part of a training step).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "mlp/backend.h"

namespace mlp {

class TimedBackend final : public Backend {
 public:
  explicit TimedBackend(Backend& inner) : in_(inner) {}
  ~TimedBackend() override;

  void set_timing(bool on) { timing_ = on; }
  void set_tag(int tag) { tag_ = tag; }  // the phase the next gemms belong to
  // Adds each timed gemm's milliseconds to ms[tag] (tag < tags) and forgets
  // them. Blocks until the gemms ran.
  void collect(double* ms, int tags);

  BackendKind kind() const override { return in_.kind(); }
  std::string describe() const override { return in_.describe(); }
  void push_range(const char* name) override { in_.push_range(name); }
  void pop_range() override { in_.pop_range(); }
  void profiler_start() override { in_.profiler_start(); }
  void profiler_stop() override { in_.profiler_stop(); }

 protected:
  void* alloc_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override;
  void* alloc_host_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override;
  void upload_impl(void* dst, const void* src, std::size_t bytes) override {
    in_.upload(dst, src, bytes);
  }
  void download_impl(void* dst, const void* src, std::size_t bytes) override {
    in_.download(dst, src, bytes);
  }
  void fill_zero_impl(void* dst, std::size_t bytes) override { in_.fill_zero(dst, bytes); }
  void synchronize_impl() override { in_.synchronize(); }
  uint64_t record_compute_event_impl() override { return in_.record_compute_event(); }
  uint64_t upload_async_impl(void* dst, const void* src, std::size_t bytes,
                             uint64_t after) override {
    return in_.upload_async(dst, src, bytes, after);
  }
  void wait_fence_impl(uint64_t fence) override { in_.wait_fence(fence); }
  uint64_t record_timestamp_impl() override { return in_.record_timestamp(); }
  double elapsed_ms_impl(uint64_t from, uint64_t to) override { return in_.elapsed_ms(from, to); }
  std::unique_ptr<Graph> capture_impl(const std::function<void()>& step) override {
    return in_.capture(step);
  }
  void replay_impl(Graph& g) override { in_.replay(g); }

  void gemm_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) override;
  void u8_to_float_impl(const uint8_t* in, Mat out, bool binarize) override {
    in_.u8_to_float(in, out, binarize);
  }
  void bias_relu_forward_impl(Mat z, const float* bias) override { in_.bias_relu_forward(z, bias); }
  void bias_forward_impl(Mat z, const float* bias) override { in_.bias_forward(z, bias); }
  void relu_backward_impl(Mat grad, CMat act) override { in_.relu_backward(grad, act); }
  void bias_grad_impl(CMat grad, float* db) override { in_.bias_grad(grad, db); }
  void softmax_xent_impl(CMat logits, const uint8_t* labels, float* dlogits,
                         double* metrics) override {
    in_.softmax_xent(logits, labels, dlogits, metrics);
  }
  void adam_step_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                      const AdamHyper& h, int64_t* step) override {
    in_.adam_step(params, grads, m, v, n, h, step);
  }

 private:
  struct Span {
    int tag;
    uint64_t from, to;
  };
  Backend& in_;
  bool timing_ = false;
  int tag_ = 0;
  std::vector<Span> spans_;
};

}  // namespace mlp
