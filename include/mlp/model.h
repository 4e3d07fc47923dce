// Model: the MLP's layer sizes, its flat parameter / gradient / Adam-moment
// buffers, and forward/backward written once against the Backend ops.
//
// Layout invariants: layer l's weights W_l are (fan_in, fan_out) row-major, so
// a layer is Y = X * W_l + b_l; each tensor starts on a 64-byte boundary (a
// cache line, mlp/tensor_align.h) inside the flat buffer (at 16-byte alignment
// layer 1's weights began 16 bytes into a line, and a CPU step on a 2-core AMD
// EPYC Zen 4 was about 2% slower); gradients and both moments use
// the same offsets, so one Adam launch updates everything. Padding floats have
// zero gradient forever and so never move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlp/backend.h"
#include "mlp/optimizer.h"
#include "mlp/step_plan.h"
#include "mlp/tensor_align.h"

namespace mlp {

enum class InitScheme { kHe, kNormal };
InitScheme parse_init(const std::string& s);  // "he" | "normal", else Error(kUsage)
const char* init_name(InitScheme s);

// "784-500-500-500-10": how every command prints a network's layer sizes.
std::string format_sizes(const std::vector<int64_t>& sizes);

class ParamLayout {
 public:
  // sizes: {inputs, hidden..., classes}, e.g. {784, 500, 500, 500, 10}
  explicit ParamLayout(std::vector<int64_t> sizes);
  int64_t layers() const { return static_cast<int64_t>(sizes_.size()) - 1; }
  int64_t fan_in(int64_t l) const { return sizes_[l]; }
  int64_t fan_out(int64_t l) const { return sizes_[l + 1]; }
  int64_t weight_offset(int64_t l) const { return w_off_[l]; }
  int64_t bias_offset(int64_t l) const { return b_off_[l]; }
  int64_t total_floats() const { return total_; }  // including alignment padding
  int64_t parameter_count() const;                 // weights and biases only
  const std::vector<int64_t>& sizes() const { return sizes_; }
  int64_t max_width() const;  // widest layer output (activation-gradient scratch width)

 private:
  std::vector<int64_t> sizes_, w_off_, b_off_;
  int64_t total_ = 0;
};

// Initial parameters, on the host, in the flat layout.
//   he:     W ~ N(0, 2/fan_in), b = 0 (suits ReLU; the default)
//   normal: W, b ~ N(0, 1), the tutorial's tf.random_normal
std::vector<float> initial_params(const ParamLayout& layout, InitScheme scheme, uint64_t seed);

// Everything a checkpoint needs to continue training exactly.
struct ModelState {
  std::vector<float> params, m, v;  // flat layout, total_floats() each
  int64_t step = 0;                 // Adam steps taken
};

// Error(kUsage) naming the hyperparameter when Adam could not work with it
// (lr, eps not finite and > 0; betas in [0, 1); a schedule's own fields).
void check_optimizer(const AdamHyper& adam, const LrSchedule& schedule);

class Model {
 public:
  Model(Backend& backend, std::vector<int64_t> sizes, int64_t max_batch, const AdamHyper& adam,
        bool binarize, const LrSchedule& schedule = {});

  const ParamLayout& layout() const { return layout_; }
  int64_t max_batch() const { return max_batch_; }
  int64_t inputs() const { return layout_.sizes().front(); }
  int64_t classes() const { return layout_.sizes().back(); }

  void set_params(const std::vector<float>& host);  // also resets Adam state
  ModelState state() const;                         // downloads (blocks)
  void set_state(const ModelState& s);
  // Writes new hyperparameters and schedule into backend memory, keeping the
  // step; a captured graph reads them at its next replay.
  void set_optimizer(const AdamHyper& adam, const LrSchedule& schedule);
  const AdamHyper& adam() const { return opt_.adam; }
  const LrSchedule& schedule() const { return opt_.schedule; }

  // images: (batch, inputs) uint8 and labels: (batch) in backend memory.
  // forward leaves the logits in logits(batch).
  void forward(const uint8_t* images, int64_t batch);
  // Loss (added into metrics) and every parameter gradient, after forward().
  void backward(const uint8_t* labels, int64_t batch, double* metrics);
  // One Adam step over the flat buffer, from the gradients backward() left.
  void update();
  // One training step: runs train_plan() for these pointers (built once per
  // distinct set and kept). Same math as forward, backward, update, with the
  // fused ops and the side lane. Issues no host sync and no allocation after
  // the first call with these pointers, so it can be captured as a graph.
  void train_step(const uint8_t* images, const uint8_t* labels, int64_t batch, double* metrics);
  // The step as a plan (mlp/step_plan.h). Lane 0, the critical path: input
  // conversion, forward, loss (with the output bias gradient and Adam's step
  // counter), and the dX chain, each dX GEMM followed by one ReLU-backward +
  // bias-gradient kernel. Lane 1: each layer's dW GEMM as soon as its dY is
  // ready, and its Adam update once its weights' last reader (the dX GEMM
  // below it) has run.
  StepPlan train_plan(const uint8_t* images, const uint8_t* labels, int64_t batch, double* metrics);
  // forward and loss only.
  void eval_step(const uint8_t* images, const uint8_t* labels, int64_t batch, double* metrics);
  CMat logits(int64_t batch) const;

  // Flat buffers in backend memory (tests compare them across backends).
  const float* params() const { return params_; }
  const float* grads() const { return grads_; }
  // The OptimizerState in backend memory (the Adam op reads and advances it).
  OptimizerState* optimizer_state() const { return opt_state_.as<OptimizerState>(); }

 private:
  Mat act(int64_t l, int64_t batch) const;

  Backend& be_;
  ParamLayout layout_;
  int64_t max_batch_;
  OptimizerState opt_;  // host copy of what is in opt_state_ (its step is not kept current)
  bool binarize_;
  static constexpr int64_t kPageFloats = 1024;  // 4 KiB
  Buffer state_, opt_state_;  // state_: the four arrays below (see the constructor)
  float* params_ = nullptr;
  float* grads_ = nullptr;
  float* m_ = nullptr;
  float* v_ = nullptr;
  std::vector<Buffer> acts_;  // acts_[0]: input as float; acts_[l]: layer l's output
  // dys_[l]: dL/d(pre-activation output of layer l), (max_batch, fan_out(l)); one
  // buffer per layer so a dW GEMM on the side lane still reads its dY while the
  // dX chain writes the next one.
  std::vector<Buffer> dys_;
  struct PlanKey {
    const uint8_t* images;
    const uint8_t* labels;
    int64_t batch;
    double* metrics;
    bool operator==(const PlanKey& o) const {
      return images == o.images && labels == o.labels && batch == o.batch && metrics == o.metrics;
    }
  };
  std::vector<std::pair<PlanKey, StepPlan>> plans_;  // train_step's plans, by pointers
};

}  // namespace mlp
