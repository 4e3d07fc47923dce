// Writes the fuzzers' seed corpus: small valid files of every kind each target
// reads, plus a few near misses. Usage: mlp_fuzz_seeds DIR (creates DIR/idx,
// DIR/checkpoint, DIR/image).
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "image_writers.h"
#include "mlp/checkpoint.h"
#include "mlp/image_io.h"
#include "mlp/rng.h"

namespace {

void save_seed(const std::string& path, const std::vector<uint8_t>& b) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

std::vector<uint8_t> idx(uint8_t type, const std::vector<uint32_t>& dims, std::size_t payload) {
  std::vector<uint8_t> b{0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  for (std::size_t i = 0; i < payload; ++i) b.push_back(static_cast<uint8_t>(i * 37));
  return b;
}

mlp::Checkpoint checkpoint(std::vector<int64_t> sizes, int64_t rows, int64_t cols, int64_t step) {
  mlp::Checkpoint c;
  c.sizes = std::move(sizes);
  c.image_rows = rows;
  c.image_cols = cols;
  c.batch_size = 2;
  c.epochs = 2;
  c.train_count = 6;  // 3 steps per epoch
  c.epochs_done = step / 3;
  c.step_in_epoch = step % 3;
  c.epoch_loss_sum = c.step_in_epoch > 0 ? 1.5 : 0.0;
  c.epoch_correct = c.step_in_epoch > 0 ? 1.0 : 0.0;
  c.state.step = step;
  const mlp::ParamLayout layout(c.sizes);
  const auto n = static_cast<std::size_t>(layout.total_floats());
  c.state.params.assign(n, 0.0f);
  c.state.m.assign(n, 0.0f);
  c.state.v.assign(n, 0.0f);
  mlp::Pcg32 rng(static_cast<uint64_t>(step), 1);
  for (const mlp::TensorView& t : mlp::tensor_views(layout))
    for (int64_t i = 0; i < t.rows * t.cols; ++i) {
      const auto k = static_cast<std::size_t>(t.offset + i);
      c.state.params[k] = static_cast<float>(rng.normal());
      c.state.m[k] = static_cast<float>(rng.normal() * 0.1);
      c.state.v[k] = static_cast<float>(rng.uniform_open0() * 0.01);
    }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  for (const char* sub : {"", "/idx", "/checkpoint", "/image"}) ::mkdir((dir + sub).c_str(), 0755);

  save_seed(dir + "/idx/images", idx(0x08, {3, 4, 4}, 48));
  save_seed(dir + "/idx/labels", idx(0x08, {5}, 5));
  save_seed(dir + "/idx/int16", idx(0x0B, {2, 3}, 12));
  save_seed(dir + "/idx/double", idx(0x0E, {2}, 16));
  save_seed(dir + "/idx/truncated", idx(0x08, {3, 4, 4}, 40));
  save_seed(dir + "/idx/gzip-magic", {0x1f, 0x8b, 8, 0, 0, 0});

  save_seed(dir + "/checkpoint/boundary",
            mlp::serialize_checkpoint(checkpoint({4, 3, 10}, 2, 2, 3)));
  save_seed(dir + "/checkpoint/mid-epoch",
            mlp::serialize_checkpoint(checkpoint({2, 2, 2, 10}, 1, 2, 4)));
  save_seed(dir + "/checkpoint/no-hidden", mlp::serialize_checkpoint(checkpoint({1, 10}, 1, 1, 0)));

  mlp::GrayImage img;
  img.width = 4;
  img.height = 3;
  for (int i = 0; i < 12; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 21));
  save_seed(dir + "/image/p5.pgm", mlp::testing::encode_pgm(img));
  const std::string p2 = "P2\n# comment\n3 2\n15\n0 7 15\n1 2 3\n";
  save_seed(dir + "/image/p2.pgm", std::vector<uint8_t>(p2.begin(), p2.end()));
  const std::string p5_16 = std::string("P5 2 1 65535\n") + std::string("\xff\xff\x80\x00", 4);
  save_seed(dir + "/image/p5-16bit.pgm", std::vector<uint8_t>(p5_16.begin(), p5_16.end()));
  mlp::testing::write_png_gray(dir + "/image/gray.png", img);
  return 0;
}
