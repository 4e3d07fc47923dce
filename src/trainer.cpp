// Trainer: the epoch loop (see include/mlp/trainer.h). One step is
//   acquire staged batch -> upload into input slot (step % 2) -> replay the
//   graph captured for that slot -> mark when the slot is free again.
// The host never waits for the device inside an epoch except through the
// staging ring's backpressure; metrics are read once, at the epoch's end.
#include "mlp/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "mlp/error.h"
#include "mlp/rng.h"

namespace mlp {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

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

Trainer::Trainer(Backend& backend, Model& model, const Dataset& train, const Dataset* test,
                 const TrainConfig& cfg)
    : be_(backend), model_(model), train_(train), test_(test), cfg_(cfg) {
  if (cfg_.batch_size > train_.count)
    throw usage_error(fmt::format("--batch-size {} is larger than the training set ({} samples)",
                                  cfg_.batch_size, train_.count));
  if (test_) test_dev_ = std::make_unique<DeviceDataset>(be_, *test_);
  stream_ = std::make_unique<BatchStream>(be_, train_, cfg_.batch_size);
  const auto slot_bytes = static_cast<std::size_t>(cfg_.batch_size * (train_.pixels() + 1));
  for (auto& in : inputs_) in = be_.alloc(slot_bytes);
  metrics_ = be_.alloc(kMetricCount * sizeof(double));
  if (cfg_.use_graph) {
    // One graph per input slot: each bakes in its slot's fixed addresses.
    for (int i = 0; i < 2; ++i) {
      const uint8_t* images = inputs_[i].as<uint8_t>();
      const uint8_t* labels = images + cfg_.batch_size * train_.pixels();
      graphs_[i] = be_.capture([this, images, labels] {
        model_.train_step(images, labels, cfg_.batch_size, metrics_.as<double>());
      });
    }
  }
}

Trainer::~Trainer() = default;

// The tutorial's loop: int(num_examples / batch_size) steps, the remainder dropped,
// so every step has the same shape and one captured graph serves them all.
int64_t Trainer::steps_per_epoch() const { return train_.count / cfg_.batch_size; }

EpochStats Trainer::train_epoch(int64_t epoch, TrainListener& listener) {
  ScopedRange range(be_, "epoch");
  BatchStream& stream = *stream_;
  const int64_t steps = cfg_.profile_steps > 0 ? std::min(cfg_.profile_steps, steps_per_epoch())
                                               : steps_per_epoch();
  stream.start_epoch(epoch_permutation(cfg_.seed, epoch, static_cast<uint32_t>(train_.count)),
                     steps);
  listener.on_epoch_begin(epoch + 1, steps);
  be_.fill_zero(metrics_.data(), kMetricCount * sizeof(double));
  be_.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = 0;
  for (; done < steps && !stop_requested_.load(); ++done) {
    ScopedRange step_range(be_, "step");
    const int slot = static_cast<int>(done & 1);
    const uint8_t* staged = stream.acquire();
    uint64_t fence;
    {
      ScopedRange copy_range(be_, "copy");
      fence = be_.upload_async(inputs_[slot].data(), staged, stream.slot_bytes(),
                               slot_free_event_[slot]);
    }
    stream.release(fence);
    if (graphs_[slot]) {
      be_.replay(*graphs_[slot]);
    } else {
      const uint8_t* images = inputs_[slot].as<uint8_t>();
      model_.train_step(images, images + cfg_.batch_size * train_.pixels(), cfg_.batch_size,
                        metrics_.as<double>());
    }
    slot_free_event_[slot] = be_.record_compute_event();
    listener.on_step(done + 1, steps);
  }
  double m[kMetricCount];
  be_.download(m, metrics_.data(), sizeof(m));  // the epoch's only host sync
  EpochStats s;
  s.epoch = epoch + 1;
  s.steps = done;
  s.seconds = seconds_since(t0);
  const double samples = static_cast<double>(done * cfg_.batch_size);
  if (done > 0) {
    s.loss = m[kMetricLossSum] / samples;
    s.train_accuracy = m[kMetricCorrect] / samples;
    s.samples_per_sec = samples / s.seconds;
  }
  if (stop_requested_.load()) stopped_early_ = true;
  if (!std::isfinite(s.loss))
    throw Error(ExitCode::kNonFinite,
                fmt::format("training loss became non-finite ({}) in epoch {} (steps {}..{}); "
                            "stopped without saving; try a smaller --lr",
                            s.loss, s.epoch, epoch * steps_per_epoch() + 1,
                            epoch * steps_per_epoch() + done));
  if (test_dev_ && !stopped_early_) {
    const EvalResult r = evaluate(be_, model_, *test_dev_);
    s.test_loss = r.loss;
    s.test_accuracy = r.accuracy;
  }
  return s;
}

std::vector<EpochStats> Trainer::run(TrainListener& listener, int64_t first_epoch) {
  std::vector<EpochStats> all;
  if (cfg_.profile_steps > 0) be_.profiler_start();
  for (int64_t e = first_epoch; e < cfg_.epochs && !stopped_early_; ++e) {
    all.push_back(train_epoch(e, listener));
    if (cfg_.profile_steps > 0) break;
    if (!listener.on_epoch_end(all.back())) break;
  }
  if (cfg_.profile_steps > 0) {
    be_.synchronize();
    be_.profiler_stop();
  }
  return all;
}

}  // namespace mlp
