// safetensors export: the file is read back with an independent minimal
// parser of the format (8-byte little-endian header length, JSON header,
// contiguous data offsets), names and shapes are PyTorch's nn.Linear ones and
// every weight is our W transposed. When /usr/bin/python3 has torch, a script
// loads the file into nn.Linear layers and must predict what we compute.
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "checkpoint_testing.h"
#include "mlp/safetensors.h"

namespace mlp {
namespace {

using testing::cli;
using testing::run_command;
using testing::TempDir;

struct Parsed {
  nlohmann::json header;
  std::vector<uint8_t> data;
  uint64_t header_len = 0;
};

Parsed parse_safetensors(const std::vector<uint8_t>& f) {
  Parsed p;
  if (f.size() < 8) throw std::runtime_error("shorter than 8 bytes");
  for (int i = 0; i < 8; ++i) p.header_len |= uint64_t{f[i]} << (8 * i);
  if (p.header_len > f.size() - 8) throw std::runtime_error("header length beyond the file");
  p.header = nlohmann::json::parse(f.begin() + 8,
                                   f.begin() + 8 + static_cast<std::ptrdiff_t>(p.header_len));
  p.data.assign(f.begin() + 8 + static_cast<std::ptrdiff_t>(p.header_len), f.end());
  return p;
}

float f32_at(const std::vector<uint8_t>& d, std::size_t byte) {
  uint32_t b = 0;
  for (int i = 0; i < 4; ++i) b |= uint32_t{d[byte + i]} << (8 * i);
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

TEST(Export, SafetensorsHeaderNamesShapesOffsetsAndValues) {
  const Checkpoint c = testing::random_checkpoint({6, 5, 3, 10}, 2, 3, 4);
  const Parsed p = parse_safetensors(safetensors_bytes(c));
  EXPECT_EQ(p.header_len % 8, 0u);
  ASSERT_TRUE(p.header.contains("__metadata__"));
  EXPECT_EQ(p.header["__metadata__"]["format"], "pt");
  EXPECT_EQ(p.header["__metadata__"]["layers"], "6-5-3-10");

  const ParamLayout layout(c.sizes);
  std::map<uint64_t, uint64_t> ranges;  // begin -> end
  std::size_t tensors = 0;
  for (const auto& [name, t] : p.header.items()) {
    if (name == "__metadata__") continue;
    ++tensors;
    EXPECT_EQ(t["dtype"], "F32") << name;
    const auto off = t["data_offsets"].get<std::vector<uint64_t>>();
    ASSERT_EQ(off.size(), 2u);
    ranges[off[0]] = off[1];
  }
  EXPECT_EQ(tensors, 6u);
  uint64_t at = 0;  // offsets must tile the data region exactly
  for (const auto& [b, e] : ranges) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(at, p.data.size());

  for (int64_t l = 0; l < layout.layers(); ++l) {
    const int64_t in = layout.fan_in(l), out = layout.fan_out(l);
    const auto& w = p.header["layers." + std::to_string(l) + ".weight"];
    const auto& b = p.header["layers." + std::to_string(l) + ".bias"];
    EXPECT_EQ(w["shape"].get<std::vector<int64_t>>(), (std::vector<int64_t>{out, in}));
    EXPECT_EQ(b["shape"].get<std::vector<int64_t>>(), (std::vector<int64_t>{out}));
    const auto w0 = w["data_offsets"][0].get<std::size_t>();
    const auto b0 = b["data_offsets"][0].get<std::size_t>();
    EXPECT_EQ(w["data_offsets"][1].get<std::size_t>() - w0, static_cast<std::size_t>(out * in * 4));
    const float* W = c.state.params.data() + layout.weight_offset(l);
    const float* B = c.state.params.data() + layout.bias_offset(l);
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i)  // PyTorch weight[o][i] is our W[i][o]
        ASSERT_EQ(f32_at(p.data, w0 + static_cast<std::size_t>(o * in + i) * 4), W[i * out + o]);
      ASSERT_EQ(f32_at(p.data, b0 + static_cast<std::size_t>(o) * 4), B[o]);
    }
  }
}

TEST(Export, CommandWritesTheSameBytesAndReportsFailures) {
  TempDir t;
  const Checkpoint c = testing::random_checkpoint({784, 16, 10}, 28, 28, 9);
  save_checkpoint(t.file("m.ckpt"), c);
  auto r =
      run_command({cli(), "export", "--model", t.file("m.ckpt"), "--out", t.file("m.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("layers.0.weight [16, 784]"), std::string::npos) << r.out;
  EXPECT_EQ(testing::read_bytes(t.file("m.safetensors")), safetensors_bytes(c));
  r = run_command(
      {cli(), "export", "--model", t.file("m.ckpt"), "--out", t.file("no/dir/m.safetensors")});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  r = run_command(
      {cli(), "export", "--model", t.file("m.safetensors"), "--out", t.file("x.safetensors")});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("a safetensors export?"), std::string::npos) << r.err;
  r = run_command({cli(), "export", "--model", t.file("m.ckpt")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST(Export, PyTorchLoadsItAndPredictsTheSame) {
  const auto has_torch = run_command({"/usr/bin/python3", "-c", "import torch"});
  if (has_torch.exit_code != 0)
    GTEST_SKIP() << "/usr/bin/python3 with torch is not installed (tools/setup --peers adds it)";
  TempDir t;
  const Checkpoint c = testing::random_checkpoint({784, 24, 16, 10}, 28, 28, 13);
  save_checkpoint(t.file("m.ckpt"), c);
  auto r =
      run_command({cli(), "export", "--model", t.file("m.ckpt"), "--out", t.file("m.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const testing::SplitFiles s = testing::make_split(1, 28, 28, 17);
  testing::write_file(t.file("pixels.bin"), s.images);
  r = run_command({"/usr/bin/python3", std::string(MLP_SOURCE_DIR) + "/tools/safetensors_reader.py",
                   t.file("m.safetensors"), t.file("pixels.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto probs = nlohmann::json::parse(r.out).get<std::vector<double>>();
  EXPECT_TRUE(testing::all_near(probs, testing::reference_probabilities(c, s.images.data()), 1e-5));
}

}  // namespace
}  // namespace mlp
