// Model: forward/backward of the MLP over the Backend ops. Reads in the order
// a step runs: layout, init, forward, loss, backward, update.
#include "mlp/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "mlp/error.h"
#include "mlp/rng.h"

namespace mlp {

InitScheme parse_init(const std::string& s) {
  if (s == "he") return InitScheme::kHe;
  if (s == "normal") return InitScheme::kNormal;
  throw usage_error(fmt::format("--init: unknown scheme '{}' (expected he or normal)", s));
}

const char* init_name(InitScheme s) { return s == InitScheme::kHe ? "he" : "normal"; }

std::string format_sizes(const std::vector<int64_t>& sizes) {
  std::string s;
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? "-" : "") + std::to_string(sizes[i]);
  return s;
}

void check_optimizer(const AdamHyper& h, const LrSchedule& s) {
  // Written as !(x > 0) so a NaN fails too.
  const auto bad = [](const char* flag, double v, const char* want) {
    throw usage_error(fmt::format("{} {}: must be {}", flag, v, want));
  };
  if (!(h.lr > 0) || !std::isfinite(h.lr)) bad("--lr", h.lr, "a finite number > 0");
  if (!(h.beta1 >= 0 && h.beta1 < 1)) bad("--beta1", h.beta1, "in [0, 1)");
  if (!(h.beta2 >= 0 && h.beta2 < 1)) bad("--beta2", h.beta2, "in [0, 1)");
  if (!(h.eps > 0) || !std::isfinite(h.eps)) bad("--eps", h.eps, "a finite number > 0");
  if (s.warmup_steps < 0) bad("--lr-warmup", static_cast<double>(s.warmup_steps), ">= 0");
  if (s.kind == LrScheduleKind::kStep) {
    if (s.step_size <= 0) bad("--lr-step", static_cast<double>(s.step_size), "> 0");
    if (!(s.gamma > 0) || !std::isfinite(s.gamma))
      bad("--lr-gamma", s.gamma, "a finite number > 0");
  }
  if (s.kind == LrScheduleKind::kCosine && (!(s.min_lr >= 0) || !std::isfinite(s.min_lr)))
    bad("--lr-min", s.min_lr, "a finite number >= 0");
}

// ---- layout -----------------------------------------------------------------

ParamLayout::ParamLayout(std::vector<int64_t> sizes) : sizes_(std::move(sizes)) {
  if (sizes_.size() < 2) throw usage_error("a model needs at least an input and an output size");
  for (int64_t s : sizes_)
    if (s <= 0 || s > (1 << 20)) throw usage_error(fmt::format("layer size {} is out of range", s));
  for (int64_t l = 0; l < layers(); ++l) {
    w_off_.push_back(total_);
    total_ += align_tensor_floats(fan_in(l) * fan_out(l));
    b_off_.push_back(total_);
    total_ += align_tensor_floats(fan_out(l));
  }
}

int64_t ParamLayout::parameter_count() const {
  int64_t n = 0;
  for (int64_t l = 0; l < layers(); ++l) n += fan_in(l) * fan_out(l) + fan_out(l);
  return n;
}

int64_t ParamLayout::max_width() const {
  return *std::max_element(sizes_.begin() + 1, sizes_.end());
}

std::vector<float> initial_params(const ParamLayout& layout, InitScheme scheme, uint64_t seed) {
  std::vector<float> p(static_cast<std::size_t>(layout.total_floats()), 0.0f);
  Pcg32 rng(seed, 0x1a17);
  for (int64_t l = 0; l < layout.layers(); ++l) {
    const double stddev =
        scheme == InitScheme::kHe ? std::sqrt(2.0 / static_cast<double>(layout.fan_in(l))) : 1.0;
    float* w = p.data() + layout.weight_offset(l);
    for (int64_t i = 0; i < layout.fan_in(l) * layout.fan_out(l); ++i)
      w[i] = static_cast<float>(rng.normal() * stddev);
    if (scheme == InitScheme::kNormal) {
      float* b = p.data() + layout.bias_offset(l);
      for (int64_t i = 0; i < layout.fan_out(l); ++i) b[i] = static_cast<float>(rng.normal());
    }
  }
  return p;
}

// ---- allocation ---------------------------------------------------------------

Model::Model(Backend& backend, std::vector<int64_t> sizes, int64_t max_batch, const AdamHyper& adam,
             bool binarize, const LrSchedule& schedule)
    : be_(backend), layout_(std::move(sizes)), max_batch_(max_batch), binarize_(binarize) {
  if (max_batch_ <= 0) throw usage_error("batch size must be positive");
  check_optimizer(adam, schedule);
  opt_.adam = adam;
  opt_.schedule = schedule;
  const auto floats = [](int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); };
  // Parameters, gradients and both moments in one allocation, each array
  // starting a quarter page (1 KiB) further into a 4 KiB page than the one
  // before: Adam reads all four at the same index and writes three, and four
  // separate large allocations all land at the same offset in their pages,
  // where a CPU's loads can wait on stores to another array that match them in
  // the low 12 address bits (4K aliasing). With the 64-byte tensor alignment,
  // a CPU step on a 2-core AMD EPYC Zen 4 was about 1% faster for it, and
  // about 3% faster for both (in-process A/B, 150 alternating blocks of 10
  // steps, 2026-12-04). 1 KiB keeps a GPU's 256-byte alignment.
  const int64_t n = layout_.total_floats();
  const int64_t stride = (n + kPageFloats - 1) / kPageFloats * kPageFloats + kPageFloats / 4;
  state_ = be_.alloc(floats(4 * stride));
  params_ = state_.as<float>();
  grads_ = params_ + stride;
  m_ = grads_ + stride;
  v_ = m_ + stride;
  opt_state_ = be_.alloc(sizeof(OptimizerState));
  be_.upload(opt_state_.data(), &opt_, sizeof(opt_));
  for (int64_t s : layout_.sizes()) acts_.push_back(be_.alloc(floats(max_batch_ * s)));
  for (int64_t l = 0; l < layout_.layers(); ++l)
    dys_.push_back(be_.alloc(floats(max_batch_ * layout_.fan_out(l))));
}

void Model::set_params(const std::vector<float>& host) {
  ModelState s;
  s.params = host;
  s.m.assign(host.size(), 0.0f);
  s.v.assign(host.size(), 0.0f);
  set_state(s);
}

ModelState Model::state() const {
  const auto n = static_cast<std::size_t>(layout_.total_floats());
  ModelState s;
  s.params.resize(n);
  s.m.resize(n);
  s.v.resize(n);
  be_.download(s.params.data(), params_, n * sizeof(float));
  be_.download(s.m.data(), m_, n * sizeof(float));
  be_.download(s.v.data(), v_, n * sizeof(float));
  OptimizerState st;
  be_.download(&st, opt_state_.data(), sizeof(st));
  s.step = st.step;
  return s;
}

void Model::set_state(const ModelState& s) {
  const auto n = static_cast<std::size_t>(layout_.total_floats());
  if (s.params.size() != n || s.m.size() != n || s.v.size() != n)
    throw Error(ExitCode::kFailure,
                fmt::format("model state has {} floats, layout needs {}", s.params.size(), n));
  be_.upload(params_, s.params.data(), n * sizeof(float));
  be_.upload(m_, s.m.data(), n * sizeof(float));
  be_.upload(v_, s.v.data(), n * sizeof(float));
  OptimizerState st = opt_;
  st.step = s.step;
  be_.upload(opt_state_.data(), &st, sizeof(st));
}

void Model::set_optimizer(const AdamHyper& adam, const LrSchedule& schedule) {
  check_optimizer(adam, schedule);
  OptimizerState st;
  be_.download(&st, opt_state_.data(), sizeof(st));  // keeps the device's step
  st.adam = opt_.adam = adam;
  st.schedule = opt_.schedule = schedule;
  be_.upload(opt_state_.data(), &st, sizeof(st));
}

// ---- forward --------------------------------------------------------------------

Mat Model::act(int64_t l, int64_t batch) const {
  return {acts_[l].as<float>(), batch, layout_.sizes()[l]};
}

CMat Model::logits(int64_t batch) const { return act(layout_.layers(), batch); }

void Model::forward(const uint8_t* images, int64_t batch) {
  if (batch <= 0 || batch > max_batch_)
    throw Error(ExitCode::kFailure, fmt::format("batch {} outside 1..{}", batch, max_batch_));
  ScopedRange range(be_, "forward");
  be_.u8_to_float(images, act(0, batch), binarize_);
  const float* p = params_;
  const int64_t last = layout_.layers() - 1;
  for (int64_t l = 0; l <= last; ++l) {
    CMat w{p + layout_.weight_offset(l), layout_.fan_in(l), layout_.fan_out(l)};
    Mat out = act(l + 1, batch);
    be_.gemm(Trans::kNo, Trans::kNo, 1.0f, act(l, batch), w, 0.0f, out);
    if (l < last)
      be_.bias_relu_forward(out, p + layout_.bias_offset(l));
    else
      be_.bias_forward(out, p + layout_.bias_offset(l));
  }
}

// ---- loss and backward -------------------------------------------------------------

void Model::backward(const uint8_t* labels, int64_t batch, double* metrics) {
  ScopedRange range(be_, "backward");
  const float* p = params_;
  float* g = grads_;
  // dys_[l] holds dL/d(output of layer l), pre-activation
  be_.softmax_xent(logits(batch), labels, dys_.back().as<float>(), metrics);
  for (int64_t l = layout_.layers() - 1; l >= 0; --l) {
    const int64_t in = layout_.fan_in(l), out = layout_.fan_out(l);
    const Mat dy{dys_[l].as<float>(), batch, out};
    // dW = A^T * dY: (in, out); db = column sums of dY
    const auto dw = [&] {
      be_.gemm(Trans::kYes, Trans::kNo, 1.0f, act(l, batch), dy, 0.0f,
               Mat{g + layout_.weight_offset(l), in, out});
    };
    if (l == 0) {  // no gradient for the input images
      // In the backend's blocks, as the plan's pieces compute it (the same bits).
      dw();
      be_.bias_grad(dy, g + layout_.bias_offset(l));
      break;
    }
    // dA = dY * W^T: (batch, in), independent of dW: both at once, as the plan
    // runs them (the same bits: see Backend::run_side_by_side).
    Mat da{dys_[l - 1].as<float>(), batch, in};
    be_.run_side_by_side(dw, [&] {
      be_.gemm(Trans::kNo, Trans::kYes, 1.0f, dy, CMat{p + layout_.weight_offset(l), in, out}, 0.0f,
               da);
    });
    be_.bias_grad(dy, g + layout_.bias_offset(l));
    be_.relu_backward(da, act(l, batch));  // then through the ReLU that produced A
  }
}

void Model::update() {
  ScopedRange range(be_, "update");
  be_.adam_step(params_, grads_, m_, v_, layout_.total_floats(), optimizer_state());
}

void Model::eval_step(const uint8_t* images, const uint8_t* labels, int64_t batch,
                      double* metrics) {
  forward(images, batch);
  be_.softmax_xent(logits(batch), labels, nullptr, metrics);
}

// ---- the step plan ------------------------------------------------------------------

void Model::train_step(const uint8_t* images, const uint8_t* labels, int64_t batch,
                       double* metrics) {
  const PlanKey key{images, labels, batch, metrics};
  for (const auto& [k, plan] : plans_)
    if (k == key) {
      plan.run(be_);
      return;
    }
  // The trainer uses a handful of input slots; keep a few plans, drop the oldest.
  if (plans_.size() >= 8) plans_.erase(plans_.begin());
  plans_.emplace_back(key, train_plan(images, labels, batch, metrics));
  plans_.back().second.run(be_);
}

StepPlan Model::train_plan(const uint8_t* images, const uint8_t* labels, int64_t batch,
                           double* metrics) {
  if (batch <= 0 || batch > max_batch_)
    throw Error(ExitCode::kFailure, fmt::format("batch {} outside 1..{}", batch, max_batch_));
  constexpr int kMain = 0, kSide = 1;
  const int64_t layers = layout_.layers(), last = layers - 1;
  float* p = params_;
  float* g = grads_;
  const auto f = [](int64_t n) { return static_cast<double>(n); };
  const auto gemm_flops = [&](int64_t m, int64_t n, int64_t k) { return 2.0 * f(m) * f(n) * f(k); };
  StepPlan plan;
  // A node's optional pieces (PlanNode::pieces): how many, each one's work,
  // and the node it follows piece by piece.
  struct Pieces {
    int count = 0;
    std::function<void(int)> run;
    int follows = -1;
  };
  const auto add = [&](std::string name, NodeKind kind, int lane, std::vector<int> deps,
                       double flops, double bytes, std::function<void()> run, Pieces pieces) {
    return plan.add({std::move(name), lane, std::move(deps), kind, flops, bytes, std::move(run),
                     pieces.count, std::move(pieces.run), pieces.follows});
  };
  const auto kernel = [&](std::string name, int lane, std::vector<int> deps, double bytes,
                          std::function<void()> run, Pieces pieces = {}) {
    return add(std::move(name), NodeKind::kKernel, lane, std::move(deps), 0.0, bytes,
               std::move(run), std::move(pieces));
  };
  const auto gemm = [&](std::string name, int lane, std::vector<int> deps, double flops,
                        std::function<void()> run, Pieces pieces = {}) {
    return add(std::move(name), NodeKind::kGemm, lane, std::move(deps), flops, 0.0, std::move(run),
               std::move(pieces));
  };

  // Forward: lane 0, each node reading the previous one's output.
  const Mat x = act(0, batch);
  int prev = kernel("u8_to_float", kMain, {}, 5.0 * f(x.size()),
                    [=] { be_.u8_to_float(images, x, binarize_); });
  for (int64_t l = 0; l <= last; ++l) {
    const CMat w{p + layout_.weight_offset(l), layout_.fan_in(l), layout_.fan_out(l)};
    const CMat in = act(l, batch);
    const Mat out = act(l + 1, batch);
    const float* b = p + layout_.bias_offset(l);
    if (be_.fuses_gemm_epilogue()) {  // --gemm lt: bias (+ ReLU) in the GEMM's epilogue
      const bool relu = l < last;
      prev =
          gemm(fmt::format("forward_gemm_bias{}{}", relu ? "_relu" : "", l), kMain, {prev},
               gemm_flops(batch, w.cols, w.rows), [=] { be_.gemm_bias_act(in, w, b, relu, out); });
      continue;
    }
    prev = gemm(fmt::format("forward_gemm{}", l), kMain, {prev}, gemm_flops(batch, w.cols, w.rows),
                [=] { be_.gemm(Trans::kNo, Trans::kNo, 1.0f, in, w, 0.0f, out); });
    if (l < last)
      prev = kernel(fmt::format("bias_relu{}", l), kMain, {prev}, 8.0 * f(out.size()),
                    [=] { be_.bias_relu_forward(out, b); });
    else
      prev = kernel(fmt::format("bias{}", l), kMain, {prev}, 8.0 * f(out.size()),
                    [=] { be_.bias_forward(out, b); });
  }

  // Loss: dY of the output layer, its bias gradient, the metrics, Adam's counter.
  {
    const Mat dy{dys_[last].as<float>(), batch, classes()};
    float* db = g + layout_.bias_offset(last);
    OptimizerState* st = optimizer_state();
    const CMat z = logits(batch);
    prev = kernel("softmax_xent_backward", kMain, {prev}, 8.0 * f(dy.size()) + f(batch),
                  [=] { be_.softmax_xent_backward(z, labels, dy, db, metrics, st); });
  }
  int dy_ready = prev;  // the node that finished dys_[l] (and db_l)
  for (int64_t l = last; l >= 0; --l) {
    const int64_t in = layout_.fan_in(l), out = layout_.fan_out(l);
    const Mat dy{dys_[l].as<float>(), batch, out};
    const CMat a = act(l, batch);
    const Mat dw{g + layout_.weight_offset(l), in, out};
    // Layer 0's dW has no dX to pair with: on a backend that computes it in
    // blocks of rows (the CPU), each block is a piece, and its Adam below
    // follows block by block (StepPlan::side_by_side_schedule). The layers
    // above run their dW whole beside their dX, so they take no pieces.
    const std::vector<int64_t> rows = l == 0
                                          ? be_.gemm_row_blocks(Trans::kYes, Trans::kNo, a, dy, dw)
                                          : std::vector<int64_t>{0, in};
    const int blocks = static_cast<int>(rows.size()) - 1;
    Pieces dw_pieces;
    if (blocks > 1)
      dw_pieces = {blocks, [=](int i) {
                     be_.gemm_rows(Trans::kYes, Trans::kNo, 1.0f, a, dy, 0.0f, dw, rows[i],
                                   rows[i + 1]);
                   }};
    // dW = A^T dY on the side lane, as soon as dY is final.
    const int dw_node = gemm(
        fmt::format("dw_gemm{}", l), kSide, {dy_ready}, gemm_flops(in, out, batch),
        [=] { be_.gemm(Trans::kYes, Trans::kNo, 1.0f, a, dy, 0.0f, dw); }, dw_pieces);
    int last_reader = dw_node;  // of W_l: the forward GEMM long before, then dX below
    if (l > 0) {
      // dA = dY W^T on lane 0, then ReLU backward + the bias gradient of layer l-1.
      const CMat w{p + layout_.weight_offset(l), in, out};
      const Mat da{dys_[l - 1].as<float>(), batch, in};
      const int dx =
          gemm(fmt::format("dx_gemm{}", l), kMain, {dy_ready}, gemm_flops(batch, in, out),
               [=] { be_.gemm(Trans::kNo, Trans::kYes, 1.0f, dy, w, 0.0f, da); });
      float* db = g + layout_.bias_offset(l - 1);
      const CMat a_in = act(l, batch);
      dy_ready = kernel(fmt::format("relu_backward_bias_grad{}", l - 1), kMain, {dx},
                        12.0 * f(da.size()), [=] { be_.relu_backward_bias_grad(da, a_in, db); });
      last_reader = dx;
    }
    // Adam over W_l and b_l (contiguous in the flat layout, padding included).
    const int64_t begin = layout_.weight_offset(l);
    const int64_t end = l < last ? layout_.weight_offset(l + 1) : layout_.total_floats();
    float* m = m_ + begin;
    float* v = v_ + begin;
    float* pl = p + begin;
    const float* gl = g + begin;
    const OptimizerState* st = optimizer_state();
    // In pieces: Adam over the rows of dW's block i, then (the last piece) over
    // the bias and the padding after the weights.
    Pieces adam_pieces;
    if (blocks > 1)
      adam_pieces = {blocks + 1,
                     [=](int i) {
                       const int64_t from = i < blocks ? rows[i] * out : in * out;
                       const int64_t to = i < blocks ? rows[i + 1] * out : end - begin;
                       be_.adam_update(pl + from, gl + from, m + from, v + from, to - from, st);
                     },
                     dw_node};
    kernel(
        fmt::format("adam{}", l), kSide, {dw_node, last_reader}, 28.0 * f(end - begin),
        [=] { be_.adam_update(pl, gl, m, v, end - begin, st); }, adam_pieces);
  }
  return plan;
}

}  // namespace mlp
