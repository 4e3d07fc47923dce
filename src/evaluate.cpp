// Evaluation (see include/mlp/evaluate.h): metrics accumulate on the backend;
// the logits of each batch come back to the host for the confusion matrix.
#include "mlp/evaluate.h"

#include <algorithm>
#include <vector>

namespace mlp {

DeviceDataset::DeviceDataset(Backend& backend, const Dataset& data)
    : data_(data),
      images_(backend.alloc(data.images.size())),
      labels_(backend.alloc(data.labels.size())) {
  backend.upload(images_.data(), data.images.data(), data.images.size());
  backend.upload(labels_.data(), data.labels.data(), data.labels.size());
}

EvalResult evaluate(Backend& be, Model& model, const DeviceDataset& data) {
  ScopedRange range(be, "evaluate");
  const Dataset& ds = data.host();
  EvalResult r;
  r.count = ds.count;
  Buffer metrics = be.alloc(kMetricCount * sizeof(double));
  std::vector<float> logits;
  for (int64_t first = 0; first < ds.count; first += model.max_batch()) {
    const int64_t batch = std::min(model.max_batch(), ds.count - first);
    model.eval_step(data.images() + first * ds.pixels(), data.labels() + first, batch,
                    metrics.as<double>());
    CMat out = model.logits(batch);
    logits.resize(static_cast<std::size_t>(out.size()));
    be.download(logits.data(), out.data, logits.size() * sizeof(float));
    for (int64_t i = 0; i < batch; ++i) {
      const float* row = logits.data() + i * out.cols;
      int64_t pred = 0;
      for (int64_t c = 1; c < out.cols; ++c)
        if (row[c] > row[pred]) pred = c;
      ++r.confusion[ds.labels[first + i]][pred];
    }
  }
  double m[kMetricCount];
  be.download(m, metrics.data(), sizeof(m));
  r.loss = m[kMetricLossSum] / static_cast<double>(ds.count);
  r.accuracy = m[kMetricCorrect] / static_cast<double>(ds.count);
  return r;
}

}  // namespace mlp
