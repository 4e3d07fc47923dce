// Checkpoint file format v2 (see include/mlp/checkpoint.h and README.md).
// All integers and floats are little-endian, written byte by byte, so the file
// is the same on any host. Parsing checks, in order: magic, header size,
// version, header CRC, payload length, payload CRC, then every field; tensor
// data is allocated only after its size is proven equal to the bytes present.
#include "mlp/checkpoint.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cmath>
#include <cstring>

#include "io/little_endian.h"  // defines: Writer, Reader
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/file_io.h"

namespace mlp {
namespace {

using io::Reader;
using io::Writer;

constexpr int64_t kMaxDim = int64_t{1}
                            << 20;  // ParamLayout's limit per layer, also rows/cols/batch
constexpr int64_t kMaxEpochs = 1000000000;

uint32_t crc32_of(const uint8_t* p, std::size_t n) {
  return static_cast<uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), p, n));
}

[[noreturn]] void invalid(const std::string& name, const std::string& what) {
  throw checkpoint_error(fmt::format("{}: checkpoint invalid: {}", name, what));
}

void check_range(const std::string& name, const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) invalid(name, fmt::format("{} = {} is outside {}..{}", field, v, lo, hi));
}

const char* const kStateNames[3] = {"parameters", "Adam first moment", "Adam second moment"};

}  // namespace

std::string describe_checkpoint(const Checkpoint& c) {
  std::string pos = fmt::format("{} epoch{} done", c.epochs_done, c.epochs_done == 1 ? "" : "s");
  if (c.step_in_epoch > 0)
    pos += fmt::format(" + {} step{}", c.step_in_epoch, c.step_in_epoch == 1 ? "" : "s");
  return fmt::format("{}, {} ({} Adam step{}), {}, seed {}", format_sizes(c.sizes), pos,
                     c.state.step, c.state.step == 1 ? "" : "s",
                     c.binarize ? "binarized pixels" : "pixels / 255", c.seed);
}

std::vector<TensorView> tensor_views(const ParamLayout& layout) {
  std::vector<TensorView> t;
  for (int64_t l = 0; l < layout.layers(); ++l) {
    t.push_back({fmt::format("layers.{}.weight", l), layout.weight_offset(l), layout.fan_in(l),
                 layout.fan_out(l)});
    t.push_back({fmt::format("layers.{}.bias", l), layout.bias_offset(l), 1, layout.fan_out(l)});
  }
  return t;
}

// ---- write ------------------------------------------------------------------------

std::vector<uint8_t> serialize_checkpoint(const Checkpoint& c) {
  const ParamLayout layout(c.sizes);
  const auto total = static_cast<std::size_t>(layout.total_floats());
  if (c.state.params.size() != total || c.state.m.size() != total || c.state.v.size() != total)
    throw checkpoint_error(fmt::format("checkpoint state has {} floats, layers {} need {}",
                                       c.state.params.size(), format_sizes(c.sizes), total));
  Writer w;
  w.u32(static_cast<uint32_t>(c.sizes.size()));
  for (int64_t s : c.sizes) w.i64(s);
  w.i64(c.image_rows);
  w.i64(c.image_cols);
  w.i64(c.batch_size);
  w.f32(c.adam.lr);
  w.f32(c.adam.beta1);
  w.f32(c.adam.beta2);
  w.f32(c.adam.eps);
  // v2: the schedule, right after the hyperparameters it shapes
  w.u32(static_cast<uint32_t>(c.schedule.kind));
  w.f32(c.schedule.gamma);
  w.i64(c.schedule.step_size);
  w.i64(c.schedule.warmup_steps);
  w.i64(c.schedule.total_steps);
  w.f32(c.schedule.min_lr);
  w.u32(c.init == InitScheme::kHe ? 0 : 1);
  w.u32(c.binarize ? 1 : 0);
  w.u64(c.seed);
  w.i64(c.epochs);
  w.i64(c.train_count);
  w.u32(c.train_labels_crc);
  w.u32(0);  // reserved
  w.i64(c.epochs_done);
  w.i64(c.step_in_epoch);
  w.f64(c.epoch_loss_sum);
  w.f64(c.epoch_correct);
  w.i64(c.state.step);
  w.u64(static_cast<uint64_t>(layout.parameter_count()));
  const std::vector<TensorView> views = tensor_views(layout);
  for (const std::vector<float>* buf : {&c.state.params, &c.state.m, &c.state.v})
    for (const TensorView& t : views) w.floats(buf->data() + t.offset, t.rows * t.cols);
  std::vector<uint8_t>& payload = w.bytes();

  Writer h;
  for (char ch : kCheckpointMagic) h.bytes().push_back(static_cast<uint8_t>(ch));
  h.u32(kCheckpointVersion);
  h.u32(static_cast<uint32_t>(kCheckpointHeaderBytes));
  h.u64(payload.size());
  h.u32(crc32_of(payload.data(), payload.size()));
  h.u32(crc32_of(h.bytes().data(), h.bytes().size()));  // over bytes 0..27
  std::vector<uint8_t> file = std::move(h.bytes());
  file.insert(file.end(), payload.begin(), payload.end());
  return file;
}

// ---- read: header ------------------------------------------------------------------

namespace {

// Returns the file's format version.
uint32_t check_header(const uint8_t* data, std::size_t size, const std::string& name) {
  const std::size_t have = size < 8 ? size : 8;
  if (size == 0 || std::memcmp(data, kCheckpointMagic, have) != 0) {
    std::string hint;
    if (size > 0 && data[0] == '<') hint = " (an HTML/XML page?)";
    if (size > 8 && data[8] == '{')
      hint =
          " (a safetensors export? eval and predict read the checkpoint that train --save writes)";
    throw checkpoint_error(fmt::format("{}: not an mnist-mlp checkpoint: bad magic{}", name, hint));
  }
  if (size < kCheckpointHeaderBytes)
    throw checkpoint_error(fmt::format("{}: checkpoint truncated: {} bytes, the header alone is {}",
                                       name, size, kCheckpointHeaderBytes));
  Reader r(data + 8, kCheckpointHeaderBytes - 8, name);
  const uint32_t version = r.u32("version");
  const uint32_t header_bytes = r.u32("header size");
  const uint64_t payload_bytes = r.u64("payload size");
  const uint32_t payload_crc = r.u32("payload CRC32");
  const uint32_t header_crc = r.u32("header CRC32");
  if (version < kCheckpointOldestVersion || version > kCheckpointVersion)
    throw checkpoint_error(
        fmt::format("{}: checkpoint version {} is not supported (this build reads versions {}..{})",
                    name, version, kCheckpointOldestVersion, kCheckpointVersion));
  if (header_bytes != kCheckpointHeaderBytes)
    throw checkpoint_error(fmt::format("{}: checkpoint corrupt: header size {}, expected {}", name,
                                       header_bytes, kCheckpointHeaderBytes));
  const uint32_t header_actual = crc32_of(data, kCheckpointHeaderBytes - 4);
  if (header_actual != header_crc)
    throw checkpoint_error(fmt::format(
        "{}: checkpoint corrupt: header CRC32 mismatch (stored {:08x}, computed {:08x})", name,
        header_crc, header_actual));
  const uint64_t present = size - kCheckpointHeaderBytes;
  if (present < payload_bytes)
    throw checkpoint_error(fmt::format(
        "{}: checkpoint truncated: the header promises {} payload bytes, only {} follow", name,
        payload_bytes, present));
  if (present > payload_bytes)
    throw checkpoint_error(
        fmt::format("{}: checkpoint corrupt: {} trailing bytes after the payload", name,
                    present - payload_bytes));
  const uint32_t actual = crc32_of(data + kCheckpointHeaderBytes, present);
  if (actual != payload_crc)
    throw checkpoint_error(fmt::format(
        "{}: checkpoint corrupt: payload CRC32 mismatch (stored {:08x}, computed {:08x})", name,
        payload_crc, actual));
  return version;
}

// v2's schedule block; its values must be ones `train` could have been given.
LrSchedule read_schedule(Reader& r, const std::string& name, const AdamHyper& adam) {
  const uint32_t kind = r.u32("lr schedule");
  if (kind > static_cast<uint32_t>(LrScheduleKind::kCosine))
    invalid(name, fmt::format("lr schedule {} is unknown", kind));
  LrSchedule s;
  s.kind = static_cast<LrScheduleKind>(kind);
  s.gamma = r.f32("lr gamma");
  s.step_size = r.i64("lr step size");
  s.warmup_steps = r.i64("lr warm-up steps");
  s.total_steps = r.i64("lr total steps");
  s.min_lr = r.f32("lr floor");
  try {
    check_optimizer(adam, s);
  } catch (const Error& e) {
    invalid(name, fmt::format("lr schedule: {}", e.what()));
  }
  return s;
}

}  // namespace

// ---- read: payload -------------------------------------------------------------------

Checkpoint parse_checkpoint(const uint8_t* data, std::size_t size, const std::string& name) {
  const uint32_t version = check_header(data, size, name);
  Reader r(data + kCheckpointHeaderBytes, size - kCheckpointHeaderBytes, name);
  Checkpoint c;
  const uint32_t n = r.u32("layer count");
  check_range(name, "layer count", n, 2, static_cast<int64_t>(kCheckpointMaxLayers));
  for (uint32_t i = 0; i < n; ++i) {
    c.sizes.push_back(r.i64("layer size"));
    check_range(name, "layer size", c.sizes.back(), 1, kMaxDim);
  }
  if (c.sizes.back() != kClasses)
    invalid(name,
            fmt::format("the model has {} outputs, not {} classes", c.sizes.back(), kClasses));
  c.image_rows = r.i64("image rows");
  c.image_cols = r.i64("image cols");
  check_range(name, "image rows", c.image_rows, 1, kMaxDim);
  check_range(name, "image cols", c.image_cols, 1, kMaxDim);
  if (c.image_rows * c.image_cols != c.sizes.front())
    invalid(name, fmt::format("images {}x{} do not match {} inputs", c.image_rows, c.image_cols,
                              c.sizes.front()));
  c.batch_size = r.i64("batch size");
  check_range(name, "batch size", c.batch_size, 1, kMaxDim);
  c.adam.lr = r.f32("lr");
  c.adam.beta1 = r.f32("beta1");
  c.adam.beta2 = r.f32("beta2");
  c.adam.eps = r.f32("eps");
  // Written as "!(x > 0)" so a NaN fails too.
  if (!(c.adam.lr > 0) || !std::isfinite(c.adam.lr) || !(c.adam.beta1 >= 0 && c.adam.beta1 < 1) ||
      !(c.adam.beta2 >= 0 && c.adam.beta2 < 1) || !(c.adam.eps > 0) || !std::isfinite(c.adam.eps))
    invalid(name,
            fmt::format("Adam hyperparameters lr {} beta1 {} beta2 {} eps {} are out of range",
                        c.adam.lr, c.adam.beta1, c.adam.beta2, c.adam.eps));
  if (version >= 2) c.schedule = read_schedule(r, name, c.adam);
  const uint32_t init = r.u32("init");
  const uint32_t binarize = r.u32("binarize");
  if (init > 1) invalid(name, fmt::format("init scheme {} is unknown", init));
  if (binarize > 1) invalid(name, fmt::format("binarize flag {} is not 0 or 1", binarize));
  c.init = init == 0 ? InitScheme::kHe : InitScheme::kNormal;
  c.binarize = binarize == 1;
  c.seed = r.u64("seed");
  c.epochs = r.i64("epochs");
  check_range(name, "epochs", c.epochs, 1, kMaxEpochs);
  c.train_count = r.i64("training samples");
  check_range(name, "training samples", c.train_count, c.batch_size, int64_t{0xFFFFFFFF});
  c.train_labels_crc = r.u32("training labels CRC32");
  if (r.u32("reserved") != 0) invalid(name, "reserved field is not zero");
  c.epochs_done = r.i64("epochs done");
  check_range(name, "epochs done", c.epochs_done, 0, c.epochs);
  c.step_in_epoch = r.i64("step in epoch");
  check_range(name, "step in epoch", c.step_in_epoch, 0,
              c.epochs_done == c.epochs ? 0 : c.steps_per_epoch() - 1);
  c.epoch_loss_sum = r.f64("epoch loss sum");
  c.epoch_correct = r.f64("epoch correct count");
  const double seen = static_cast<double>(c.step_in_epoch * c.batch_size);
  if (!(c.epoch_loss_sum >= 0) || !std::isfinite(c.epoch_loss_sum) || !(c.epoch_correct >= 0) ||
      !(c.epoch_correct <= seen) || (c.step_in_epoch == 0 && c.epoch_loss_sum != 0))
    invalid(name, fmt::format("epoch metrics (loss sum {}, correct {}) do not fit {} samples seen",
                              c.epoch_loss_sum, c.epoch_correct, seen));
  c.state.step = r.i64("Adam step");
  // Both factors are bounded above (1e9 epochs, 2^32 steps), so this cannot overflow.
  const int64_t expected_step = c.epochs_done * c.steps_per_epoch() + c.step_in_epoch;
  if (c.state.step != expected_step)
    invalid(name, fmt::format("Adam step {} does not match epoch {} step {} ({} steps per epoch)",
                              c.state.step, c.epochs_done, c.step_in_epoch, c.steps_per_epoch()));

  const ParamLayout layout(c.sizes);  // sizes validated above: cannot throw
  const auto floats = static_cast<uint64_t>(layout.parameter_count());
  const uint64_t stored = r.u64("tensor size");
  if (stored != floats)
    invalid(name, fmt::format("tensor size {} does not match layers {} ({} parameters)", stored,
                              format_sizes(c.sizes), floats));
  // 3 blocks of `floats` f32 values must be exactly what is left; only then allocate.
  if (r.left() != floats * 12)
    invalid(name, fmt::format("{} bytes of tensor data; layers {} need {}", r.left(),
                              format_sizes(c.sizes), floats * 12));
  const std::vector<TensorView> views = tensor_views(layout);
  const auto total = static_cast<std::size_t>(layout.total_floats());
  std::vector<float>* bufs[3] = {&c.state.params, &c.state.m, &c.state.v};
  for (int b = 0; b < 3; ++b) {
    bufs[b]->assign(total, 0.0f);  // alignment padding stays zero
    for (const TensorView& t : views) {
      float* dst = bufs[b]->data() + t.offset;
      for (int64_t i = 0; i < t.rows * t.cols; ++i) {
        dst[i] = r.f32("tensor");
        if (!std::isfinite(dst[i]) || (b == 2 && dst[i] < 0))
          invalid(name,
                  fmt::format("{} of {} holds {} at index {}", kStateNames[b], t.name, dst[i], i));
      }
    }
  }
  return c;
}

// ---- files ----------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  const ParamLayout layout(c.sizes);
  const std::vector<TensorView> views = tensor_views(layout);
  const std::vector<float>* bufs[3] = {&c.state.params, &c.state.m, &c.state.v};
  for (int b = 0; b < 3; ++b) {
    if (bufs[b]->size() != static_cast<std::size_t>(layout.total_floats()))
      continue;  // serialize reports it
    for (const TensorView& t : views)
      for (int64_t i = 0; i < t.rows * t.cols; ++i)
        if (!std::isfinite((*bufs[b])[static_cast<std::size_t>(t.offset + i)]))
          throw Error(ExitCode::kNonFinite,
                      fmt::format("{}: not saved: the {} of {} became non-finite (after {} Adam "
                                  "steps); the previous checkpoint (if any) is unchanged",
                                  path, kStateNames[b], t.name, c.state.step));
  }
  const std::vector<uint8_t> bytes = serialize_checkpoint(c);
  write_file_atomic(path, bytes.data(), bytes.size(), ExitCode::kCheckpoint, "checkpoint");
}

Checkpoint load_checkpoint(const std::string& path) {
  // The header's payload size is checked against the file size before the
  // whole file is read: a valid header on a huge or sparse file costs nothing.
  uint64_t file_size = 0;
  const std::vector<uint8_t> head =
      read_file_head(path, kCheckpointHeaderBytes, file_size, ExitCode::kCheckpoint, "checkpoint");
  if (head.size() == kCheckpointHeaderBytes &&
      std::memcmp(head.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) == 0) {
    uint64_t payload = 0;
    uint32_t header_crc = 0;
    for (int i = 0; i < 8; ++i) payload |= uint64_t{head[16 + i]} << (8 * i);
    for (int i = 0; i < 4; ++i) header_crc |= uint32_t{head[28 + i]} << (8 * i);
    // An untrustworthy header (bad CRC, other version): check_header names the problem.
    if (crc32_of(head.data(), kCheckpointHeaderBytes - 4) != header_crc)
      check_header(head.data(), head.size(), path);
    const uint64_t present = file_size - kCheckpointHeaderBytes;
    if (present < payload)
      throw checkpoint_error(fmt::format(
          "{}: checkpoint truncated: the header promises {} payload bytes, only {} follow", path,
          payload, present));
    if (present > payload)
      throw checkpoint_error(fmt::format(
          "{}: checkpoint corrupt: {} trailing bytes after the payload", path, present - payload));
  }
  const std::vector<uint8_t> bytes =
      read_file_bytes(path, kCheckpointMaxBytes, ExitCode::kCheckpoint, "checkpoint");
  return parse_checkpoint(bytes.data(), bytes.size(), path);
}

}  // namespace mlp
