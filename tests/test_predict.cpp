// predict and eval: the image decoders (PGM P5/P2, PNG through libpng) on
// images the test writes itself, every malformed case, and the CLI commands
// checked against an independent double-precision forward pass.
#include <png.h>

#include <nlohmann/json.hpp>

#include "checkpoint_testing.h"
#include "image_writers.h"
#include "mlp/image_io.h"

namespace mlp {
namespace {

using testing::cli;
using testing::encode_pgm;
using testing::run_command;
using testing::TempDir;
using testing::throws_error;
using testing::write_png_gray;

GrayImage decode(const std::string& s) {
  return decode_image(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "img");
}

GrayImage random_image(int64_t w, int64_t h, uint64_t seed) {
  GrayImage img;
  img.width = w;
  img.height = h;
  Pcg32 rng(seed, 3);
  for (int64_t i = 0; i < w * h; ++i) img.pixels.push_back(static_cast<uint8_t>(rng.below(256)));
  return img;
}

TEST(ImageIo, PgmBinaryRoundTrip) {
  const GrayImage img = random_image(5, 3, 1);
  const std::vector<uint8_t> b = encode_pgm(img);
  const GrayImage back = decode_image(b.data(), b.size(), "x.pgm");
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(back.conversion, "");
}

TEST(ImageIo, PgmAsciiWithCommentsAndSmallMaxval) {
  const GrayImage img = decode("P2\n# made by hand\n3 2 # size\n15\n0 7 15\n1 2\n3\n");
  EXPECT_EQ(img.width, 3);
  EXPECT_EQ(img.height, 2);
  // v * 255 / 15, rounded
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{0, 119, 255, 17, 34, 51}));
  EXPECT_NE(img.conversion.find("maxval 15"), std::string::npos);
}

TEST(ImageIo, Pgm16Bit) {
  std::string s = "P5 2 1 65535\n";
  s += std::string("\xff\xff\x80\x00", 4);
  const GrayImage img = decode(s);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 128}));
}

TEST(ImageIo, PgmMalformedCasesNameTheProblem) {
  const auto bad = [](const std::string& s, const std::string& part) {
    EXPECT_TRUE(throws_error([&] { decode(s); }, ExitCode::kData, {"img", part})) << s;
  };
  bad("P6\n2 2\n255\n", "PPM color image");
  bad("P4\n2 2\n", "PBM bitmap");
  bad("P5\n2 2\n255\n\x01\x02\x03", "truncated");
  bad("P5\n2 1\n255\n\x01\x02\x03", "trailing bytes");
  bad("P5\n2 1\n100\n\x01\xc8", "above maxval 100");
  bad("P5\n0 28\n255\n", "none may be 0");
  bad("P5\n99999 2\n255\n", "larger than 16384");
  bad("P5\n16384 16384\n255\n\x01\x02", "truncated");  // no 256 MiB allocation on the way
  bad("P2\n2 1\n255\n1 x\n", "expected the pixel value");
  bad("P2\n2 1\n255\n1\n", "no pixel value");
  bad("P5x", "no whitespace after the magic");
  bad("\xff\xd8\xff\xe0 jfif", "JPEG images are not supported");
  bad("hello", "not a PNG or PGM image");
  bad("", "empty");
}

TEST(ImageIo, PngGrayRoundTrip) {
  TempDir t;
  const GrayImage img = random_image(28, 28, 2);
  write_png_gray(t.file("a.png"), img);
  const GrayImage back = read_image(t.file("a.png"));
  EXPECT_EQ(back.width, 28);
  EXPECT_EQ(back.height, 28);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(back.conversion, "");
}

// Writes an RGBA PNG with libpng directly: gray-valued color pixels, and a
// fully transparent white pixel that must come out black (MNIST background).
TEST(ImageIo, PngColorAndAlphaAreConvertedToGrayOnBlack) {
  TempDir t;
  const std::vector<uint8_t> rgba{10, 10, 10, 255, 200, 200, 200, 255, 255, 255, 255, 0};
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = 3;
  image.height = 1;
  image.format = PNG_FORMAT_RGBA;
  ASSERT_TRUE(png_image_write_to_file(&image, t.file("c.png").c_str(), 0, rgba.data(), 0, nullptr));
  const GrayImage img = read_image(t.file("c.png"));
  ASSERT_EQ(img.pixels.size(), 3u);
  EXPECT_LE(std::abs(img.pixels[0] - 10), 1);
  EXPECT_LE(std::abs(img.pixels[1] - 200), 1);
  EXPECT_EQ(img.pixels[2], 0);
  EXPECT_NE(img.conversion.find("color converted to gray"), std::string::npos) << img.conversion;
  EXPECT_NE(img.conversion.find("transparency"), std::string::npos) << img.conversion;
}

TEST(ImageIo, CorruptPngIsAnError) {
  TempDir t;
  write_png_gray(t.file("a.png"), random_image(28, 28, 3));
  std::string s = testing::read_text(t.file("a.png"));
  s.resize(s.size() - 30);  // cut into the image data
  EXPECT_TRUE(throws_error([&] { decode(s); }, ExitCode::kData, {"img", "PNG"}));
  s.resize(20);  // cut into the header
  EXPECT_TRUE(throws_error([&] { decode(s); }, ExitCode::kData, {"img", "PNG"}));
}

// ---- the predict command -------------------------------------------------------------

struct Model784 {
  TempDir dir;
  Checkpoint c = testing::random_checkpoint({784, 32, 10}, 28, 28, 21);
  std::string path = dir.file("m.ckpt");
  Model784() { save_checkpoint(path, c); }
};

void expect_prediction(const nlohmann::json& p, const std::vector<double>& want) {
  const auto probs = p["probabilities"].get<std::vector<double>>();
  ASSERT_EQ(probs.size(), 10u);
  EXPECT_TRUE(testing::all_near(probs, want, 1e-5));
  const auto best = std::max_element(want.begin(), want.end()) - want.begin();
  EXPECT_EQ(p["class"].get<int64_t>(), best);
}

TEST(Predict, PgmAndPngAgreeWithAReferenceForwardPass) {
  Model784 m;
  const GrayImage a = random_image(28, 28, 5), b = random_image(28, 28, 6);
  testing::write_file(m.dir.file("a.pgm"), encode_pgm(a));
  write_png_gray(m.dir.file("b.png"), b);
  const auto r = run_command({cli(), "predict", "--device", "cpu", "--model", m.path,
                              m.dir.file("a.pgm"), m.dir.file("b.png"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["predictions"].size(), 2u);
  EXPECT_EQ(j["predictions"][0]["input"], m.dir.file("a.pgm"));
  expect_prediction(j["predictions"][0], testing::reference_probabilities(m.c, a.pixels.data()));
  expect_prediction(j["predictions"][1], testing::reference_probabilities(m.c, b.pixels.data()));

  const auto human =
      run_command({cli(), "predict", "--device", "cpu", "--model", m.path, m.dir.file("a.pgm")});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_EQ(
      human.out.rfind(
          m.dir.file("a.pgm") + ": " + std::to_string(j["predictions"][0]["class"].get<int>()), 0),
      0u)
      << human.out;
}

TEST(Predict, IdxEntryAndInvert) {
  Model784 m;
  const testing::SplitFiles s = testing::make_split(3, 28, 28, 8);
  testing::write_file(m.dir.file("imgs"), testing::idx_bytes(0x08, {3, 28, 28}, s.images));
  auto r = run_command({cli(), "predict", "--device", "cpu", "--model", m.path, "--idx",
                        m.dir.file("imgs"), "--index", "2,0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["predictions"].size(), 2u);
  EXPECT_EQ(j["predictions"][0]["input"], m.dir.file("imgs") + "[2]");
  expect_prediction(j["predictions"][0],
                    testing::reference_probabilities(m.c, s.images.data() + 2 * 784));
  expect_prediction(j["predictions"][1], testing::reference_probabilities(m.c, s.images.data()));

  std::vector<uint8_t> inverted(s.images.begin(), s.images.begin() + 784);
  for (auto& p : inverted) p = static_cast<uint8_t>(255 - p);
  r = run_command({cli(), "predict", "--device", "cpu", "--model", m.path, "--idx",
                   m.dir.file("imgs"), "--index", "0", "--invert", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  expect_prediction(j["predictions"][0], testing::reference_probabilities(m.c, inverted.data()));
}

TEST(Predict, WrongInputsGetClearErrorsAndExitCodes) {
  Model784 m;
  testing::write_file(m.dir.file("small.pgm"), encode_pgm(random_image(27, 28, 1)));
  testing::write_text(m.dir.file("notes.txt"), "hello");
  const auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> a{cli(), "predict", "--device", "cpu", "--model", m.path};
    a.insert(a.end(), args.begin(), args.end());
    return run_command(a);
  };
  auto r = run({m.dir.file("small.pgm")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("small.pgm: image is 27x28; the model expects 28x28"), std::string::npos)
      << r.err;
  r = run({m.dir.file("notes.txt")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("notes.txt: not a PNG or PGM image"), std::string::npos) << r.err;
  r = run({m.dir.file("missing.png")});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("missing.png: no such file"), std::string::npos) << r.err;
  testing::write_file(m.dir.file("imgs"),
                      testing::idx_bytes(0x08, {1, 28, 28}, std::vector<uint8_t>(784)));
  r = run({"--idx", m.dir.file("imgs"), "--index", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--index 1"), std::string::npos) << r.err;
  r = run({});
  EXPECT_EQ(r.exit_code, 2);
  r = run_command({cli(), "predict", "--model", m.dir.file("notes.txt"), m.dir.file("small.pgm")});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("not an mnist-mlp checkpoint"), std::string::npos) << r.err;
}

// ---- the eval command -------------------------------------------------------------------

TEST(Eval, MatchesAReferenceOverTheTestSplit) {
  Model784 m;
  const std::string data = m.dir.file("data");
  std::filesystem::create_directory(data);
  const testing::SplitFiles test = testing::make_split(57, 28, 28, 31);
  testing::write_split(data, "train", testing::make_split(20, 28, 28, 30), 28, 28);
  testing::write_split(data, "t10k", test, 28, 28);
  const auto r = run_command({cli(), "eval", "--device", "cpu", "--model", m.path, "--data", data,
                              "--batch-size", "10", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  int64_t confusion[10][10] = {};
  double loss = 0;
  for (int i = 0; i < 57; ++i) {
    const auto p = testing::reference_probabilities(m.c, test.images.data() + i * 784);
    const auto pred = std::max_element(p.begin(), p.end()) - p.begin();
    ++confusion[test.labels[i]][pred];
    loss -= std::log(p[test.labels[i]]);
  }
  int64_t correct = 0;
  for (int t = 0; t < 10; ++t) {
    correct += confusion[t][t];
    for (int p = 0; p < 10; ++p) EXPECT_EQ(j["confusion"][t][p].get<int64_t>(), confusion[t][p]);
  }
  EXPECT_EQ(j["count"].get<int64_t>(), 57);
  EXPECT_TRUE(
      testing::near(j["accuracy"].get<double>(), static_cast<double>(correct) / 57.0, 1e-12));
  EXPECT_TRUE(testing::near(j["loss"].get<double>(), loss / 57, 1e-4, 1e-5));
  EXPECT_EQ(j["per_class_accuracy"].size(), 10u);

  const auto human =
      run_command({cli(), "eval", "--device", "cpu", "--model", m.path, "--data", data});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("confusion matrix"), std::string::npos) << human.out;
  const auto missing =
      run_command({cli(), "eval", "--model", m.path, "--data", m.dir.file("nodata")});
  EXPECT_EQ(missing.exit_code, 3) << missing.err;
}

}  // namespace
}  // namespace mlp
