// Fused evaluation (see fused_evaluate.h).
#include "fused/fused_evaluate.h"

#include <algorithm>
#include <numeric>

namespace mlp::fused {
namespace {

// Adds the predictions of one batch (rows first .. first + rows) to the confusion matrix;
// the prediction is the first largest logit, as evaluate() and the kernel's loss count it.
void add_confusion(const std::vector<float>& logits, int64_t classes, const Dataset& data,
                   int64_t first, int64_t rows, EvalResult* r) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = logits.data() + i * classes;
    int64_t pred = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (row[c] > row[pred]) pred = c;
    ++r->confusion[data.labels[first + i]][pred];
  }
}

}  // namespace

FusedEvaluator::FusedEvaluator(BackendKind kind, const std::vector<int64_t>& sizes, int64_t batch,
                               bool binarize, const Dataset& data)
    : data_(data), batch_(std::max<int64_t>(1, std::min(batch, data.count))) {
  std::vector<int32_t> order(static_cast<std::size_t>(data.count));
  std::iota(order.begin(), order.end(), 0);
  full_ = make_step_runner(kind, sizes, batch_, binarize, /*forward_only=*/true);
  full_->set_data(data);
  full_->set_order(order);
  const int64_t rest = data.count % batch_;
  if (rest > 0) {
    rest_ = make_step_runner(kind, sizes, rest, binarize, /*forward_only=*/true);
    rest_->set_data(data);
    rest_->set_order(std::vector<int32_t>(order.end() - rest, order.end()));
  }
}

EvalResult FusedEvaluator::evaluate(const std::vector<float>& params) {
  EvalResult r;
  r.count = data_.count;
  const int64_t classes = full_->plan().layer[full_->plan().layers - 1].fan_out;
  const int64_t full = data_.count / batch_;
  double loss = 0, correct = 0;
  full_->set_params(params);
  full_->set_metrics(0, 0);
  for (int64_t b = 0; b < full; ++b) {
    full_->run(b, 1);
    add_confusion(full_->logits(), classes, data_, b * batch_, batch_, &r);
  }
  double m[kMetricCount];
  full_->metrics(m);
  loss += m[kMetricLossSum];
  correct += m[kMetricCorrect];
  if (rest_) {
    rest_->set_params(params);
    rest_->set_metrics(0, 0);
    rest_->run(0, 1);
    add_confusion(rest_->logits(), classes, data_, full * batch_, data_.count - full * batch_, &r);
    rest_->metrics(m);
    loss += m[kMetricLossSum];
    correct += m[kMetricCorrect];
  }
  r.loss = loss / static_cast<double>(data_.count);
  r.accuracy = correct / static_cast<double>(data_.count);
  return r;
}

}  // namespace mlp::fused
