// The CPU emulation behind the StepRunner seam (see fused_runner.h), and the factory.
#include "fused/fused_runner.h"

#include <fmt/format.h>

#include <algorithm>

#include "fused/fused_emulation.h"
#include "mlp/error.h"

namespace mlp::fused {
namespace {

[[noreturn]] void refuse(const std::string& why) {
  throw Error(ExitCode::kDevice, "--engine fused: " + why);
}

// Host buffers and the emulation; a "launch" runs its steps at once.
class EmulationRunner final : public StepRunner {
 public:
  EmulationRunner(const std::vector<int64_t>& sizes, int64_t batch, bool binarize,
                  bool forward_only) {
    PlanRequest q{
        sizes.data(), static_cast<int32_t>(sizes.size()), batch, kEmulatedGrid, kEmulatedSmemBytes,
        binarize};
    q.forward_only = forward_only;
    const Verdict v = make_plan(q, &plan_);
    if (!v.ok) refuse(v.reason);
    const auto n = static_cast<std::size_t>(plan_.param_floats);
    params_.assign(n, 0.0f);
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
    workspace_.assign(static_cast<std::size_t>(workspace_bytes(plan_) / 4), 0.0f);
  }

  std::string describe() const override {
    return fmt::format("fused CPU emulation of the kernel's {}-block plan", plan_.grid);
  }
  void set_data(const Dataset& data) override { data_ = &data; }
  void set_order(const std::vector<int32_t>& order) override { order_ = order; }
  void set_state(const ModelState& s, const AdamHyper& adam, const LrSchedule& schedule) override {
    check_size(s.params.size());
    params_ = s.params;
    m_ = s.m;
    v_ = s.v;
    state_ = OptimizerState{};
    state_.step = s.step;
    state_.adam = adam;
    state_.schedule = schedule;
  }
  ModelState state() override { return ModelState{params_, m_, v_, state_.step}; }
  void set_params(const std::vector<float>& params) override {
    check_size(params.size());
    params_ = params;
  }
  void set_metrics(double loss_sum, double correct) override {
    metrics_[0] = loss_sum;
    metrics_[1] = correct;
  }
  void metrics(double out[kMetricCount]) override { std::copy(metrics_, metrics_ + 2, out); }
  void run(int64_t first, int64_t steps) override {
    if (!data_ || (first + steps) * plan_.batch > static_cast<int64_t>(order_.size()))
      throw Error(ExitCode::kFailure, "fused runner: steps beyond the order or no data");
    const StepArgs a{data_->images.data(),
                     data_->labels.data(),
                     order_.data() + first * plan_.batch,
                     steps,
                     params_.data(),
                     m_.data(),
                     v_.data(),
                     &state_,
                     metrics_,
                     workspace_.data(),
                     nullptr};
    emulate_steps(plan_, a);
  }
  std::vector<float> logits() override {
    const LayerPlan& last = plan_.layer[plan_.layers - 1];
    const float* p = workspace_.data() + plan_.counter_floats + last.act_off;
    return std::vector<float>(p, p + int64_t{plan_.batch} * last.fan_out);
  }
  void synchronize() override {}

 private:
  void check_size(std::size_t n) const {
    if (static_cast<int64_t>(n) != plan_.param_floats)
      throw Error(ExitCode::kFailure, "fused runner: parameter buffer of the wrong size");
  }
  const Dataset* data_ = nullptr;
  std::vector<int32_t> order_;
  std::vector<float> params_, m_, v_, workspace_;
  OptimizerState state_{};
  double metrics_[kMetricCount] = {0, 0};
};

}  // namespace

std::unique_ptr<StepRunner> make_step_runner(BackendKind kind, const std::vector<int64_t>& sizes,
                                             int64_t batch, bool binarize, bool forward_only) {
  if (kind == BackendKind::kCpu)
    return std::make_unique<EmulationRunner>(sizes, batch, binarize, forward_only);
#ifdef MLP_WITH_CUDA
  return make_cuda_step_runner(sizes, batch, binarize, forward_only);
#else
  refuse(
      "this mnist-mlp was built without CUDA; the fused kernel needs it (--device cpu runs "
      "its CPU emulation)");
#endif
}

}  // namespace mlp::fused
