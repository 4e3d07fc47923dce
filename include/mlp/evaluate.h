// Evaluation: loss, accuracy and the confusion matrix of a model over a whole
// dataset, which is copied into backend memory once (no per-batch upload).
// Used after every epoch by the Trainer and by `mnist-mlp eval`.
#pragma once

#include <array>
#include <cstdint>

#include "mlp/backend.h"
#include "mlp/dataset.h"
#include "mlp/model.h"

namespace mlp {

struct EvalResult {
  int64_t count = 0;
  double loss = 0;
  double accuracy = 0;
  std::array<std::array<int64_t, kClasses>, kClasses> confusion{};  // [true][predicted]
};

// A dataset in backend memory, uploaded at construction.
class DeviceDataset {
 public:
  DeviceDataset(Backend& backend, const Dataset& data);
  const Dataset& host() const { return data_; }
  const uint8_t* images() const { return images_.as<uint8_t>(); }
  const uint8_t* labels() const { return labels_.as<uint8_t>(); }

 private:
  const Dataset& data_;
  Buffer images_, labels_;
};

// Forward passes of up to model.max_batch() images at a time.
EvalResult evaluate(Backend& backend, Model& model, const DeviceDataset& data);

}  // namespace mlp
