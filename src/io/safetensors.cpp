// safetensors export (see include/mlp/safetensors.h). The JSON header is built
// with nlohmann-json; data offsets are relative to the first byte after it and
// cover the data region exactly, in layer order, as the format requires.
#include "mlp/safetensors.h"

#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "mlp/error.h"
#include "mlp/file_io.h"

namespace mlp {
namespace {

void put_f32(std::vector<uint8_t>& out, float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(b >> (8 * i)));
}

}  // namespace

std::vector<uint8_t> safetensors_bytes(const Checkpoint& c) {
  const ParamLayout layout(c.sizes);
  if (c.state.params.size() != static_cast<std::size_t>(layout.total_floats()))
    throw checkpoint_error("safetensors export: parameter buffer does not match the layers");
  const float* p = c.state.params.data();
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint8_t> data;
  for (int64_t l = 0; l < layout.layers(); ++l) {
    const int64_t in = layout.fan_in(l), out = layout.fan_out(l);
    const std::size_t w_begin = data.size();
    const float* w = p + layout.weight_offset(l);  // (in, out) row-major
    for (int64_t o = 0; o < out; ++o)              // written as (out, in): PyTorch's layout
      for (int64_t i = 0; i < in; ++i) put_f32(data, w[i * out + o]);
    header[fmt::format("layers.{}.weight", l)] = {
        {"dtype", "F32"}, {"shape", {out, in}}, {"data_offsets", {w_begin, data.size()}}};
    const std::size_t b_begin = data.size();
    const float* b = p + layout.bias_offset(l);
    for (int64_t o = 0; o < out; ++o) put_f32(data, b[o]);
    header[fmt::format("layers.{}.bias", l)] = {{"dtype", "F32"},
                                                {"shape", nlohmann::json::array({out})},
                                                {"data_offsets", {b_begin, data.size()}}};
  }
  // Metadata values must be strings.
  header["__metadata__"] = {
      {"format", "pt"},
      {"source", std::string("mnist-mlp ") + MLP_VERSION},
      {"layers", format_sizes(c.sizes)},
      {"activation", "relu between layers, none after the last (logits)"},
      {"input", fmt::format("{}x{} grayscale, row-major, {}", c.image_rows, c.image_cols,
                            c.binarize ? "1 if pixel > 127 else 0" : "pixel / 255")},
      {"epochs_done", std::to_string(c.epochs_done)},
      {"adam_steps", std::to_string(c.state.step)}};
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::vector<uint8_t> file;
  file.reserve(8 + json.size() + data.size());
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<uint8_t>(n >> (8 * i)));
  file.insert(file.end(), json.begin(), json.end());
  file.insert(file.end(), data.begin(), data.end());
  return file;
}

void export_safetensors(const Checkpoint& c, const std::string& path) {
  const std::vector<uint8_t> bytes = safetensors_bytes(c);
  write_file_atomic(path, bytes.data(), bytes.size(), ExitCode::kCheckpoint, "safetensors file");
}

}  // namespace mlp
