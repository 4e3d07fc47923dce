// Checkpoints: everything needed to continue a training run exactly, or to use
// the model, in one versioned little-endian binary file (format table in
// README.md, "Checkpoint format"; constants below). The shuffle needs no saved
// generator state: epoch e visits epoch_permutation(seed, e, train_count), so
// (seed, epochs_done, step_in_epoch) is the whole data-order state.
// Invariant: adam_step == epochs_done * (train_count / batch_size) + step_in_epoch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlp/model.h"
#include "mlp/optimizer.h"

namespace mlp {

inline constexpr char kCheckpointMagic[8] = {'M', 'L', 'P', 'C', 'K', 'P', 'T', '\0'};
// Version 2 added the learning-rate schedule; version 1 files (constant lr)
// still load, with the default (constant) schedule.
inline constexpr uint32_t kCheckpointVersion = 2;
inline constexpr uint32_t kCheckpointOldestVersion = 1;
inline constexpr std::size_t kCheckpointHeaderBytes = 32;
inline constexpr std::size_t kCheckpointMaxLayers =
    64;  // sizes entries, inputs and classes included
inline constexpr std::size_t kCheckpointMaxBytes = std::size_t{16} << 30;

struct Checkpoint {
  // ---- what was trained, and how (a resume refuses different values) ----
  std::vector<int64_t> sizes;              // {inputs, hidden..., classes}
  int64_t image_rows = 0, image_cols = 0;  // rows * cols == sizes.front()
  int64_t batch_size = 0;
  AdamHyper adam;
  LrSchedule schedule;  // in optimizer steps (v2; v1 files: constant)
  InitScheme init = InitScheme::kHe;
  bool binarize = false;
  uint64_t seed = 0;
  int64_t epochs = 0;             // epochs the run was asked for (a resume's default)
  int64_t train_count = 0;        // training samples: the shuffle's domain
  uint32_t train_labels_crc = 0;  // CRC32 of the training labels: same data on resume
  // ---- where training stands ----
  int64_t epochs_done = 0;    // complete epochs
  int64_t step_in_epoch = 0;  // steps into epoch epochs_done (0 at an epoch boundary)
  double epoch_loss_sum = 0;  // metrics of those steps, so the epoch's mean
  double epoch_correct = 0;   //   loss and accuracy resume exactly
  ModelState state;           // flat layout (padding included); state.step = Adam steps

  int64_t steps_per_epoch() const { return batch_size > 0 ? train_count / batch_size : 0; }
};

// The file's bytes (header + payload). Throws Error(kCheckpoint) if `c` is
// inconsistent (vector sizes that do not match `sizes`).
std::vector<uint8_t> serialize_checkpoint(const Checkpoint& c);

// Parses and validates bytes from memory; `name` (the path) starts every
// message, which says which check failed: truncated, bad magic, unsupported
// version, header or payload CRC mismatch, trailing bytes, or an invalid field.
// Never allocates from a size it has not checked against the bytes present.
Checkpoint parse_checkpoint(const uint8_t* data, std::size_t size, const std::string& name);

// Atomic save (see file_io.h). Refuses non-finite parameters or moments with
// Error(kNonFinite), so a diverged run never replaces a good checkpoint.
void save_checkpoint(const std::string& path, const Checkpoint& c);
Checkpoint load_checkpoint(const std::string& path);

// "784-500-500-500-10, 10 epochs done (6000 Adam steps), pixels / 255, seed 1"
std::string describe_checkpoint(const Checkpoint& c);

// Per-layer views of the flat buffers, in file order (W_0, b_0, W_1, b_1, ...).
struct TensorView {
  std::string name;    // "layers.0.weight" (the (fan_in, fan_out) layout, not PyTorch's)
  int64_t offset;      // in floats, into the flat layout
  int64_t rows, cols;  // weights: (fan_in, fan_out); biases: (1, fan_out)
};
std::vector<TensorView> tensor_views(const ParamLayout& layout);

}  // namespace mlp
