// mnist-mlp predict: classifies the user's own images (PGM, PNG) or entries of
// an IDX file with a checkpoint, printing the class and the ten softmax
// probabilities. Images must match the training images: 28x28 grayscale, a
// light digit on a dark background (--invert flips dark-on-light drawings).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_flags.h"
#include "cli/flag_checks.h"
#include "mlp/backend.h"
#include "mlp/checkpoint.h"
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/image_io.h"
#include "mlp/model.h"

namespace mlp::cli {
namespace {

struct PredictOptions {
  std::string model;
  std::vector<std::string> files;
  std::string idx;
  std::string index_text;      // --index as given; kIndexList checked it
  std::vector<int64_t> index;  // parsed from index_text
  bool invert = false;
  bool json = false;
  DeviceFlags device;
};

struct Input {
  std::string name;
  std::vector<uint8_t> pixels;
};

Input image_input(const std::string& path, const Checkpoint& c, bool invert) {
  // The size is checked from the header, before a 16384x16384 image is decoded.
  GrayImage img = read_image(path, ImageSize{c.image_cols, c.image_rows});
  if (invert)
    for (uint8_t& p : img.pixels) p = static_cast<uint8_t>(255 - p);
  if (!img.conversion.empty()) fmt::print(stderr, "note: {}: {}\n", path, img.conversion);
  double mean = 0;
  for (uint8_t p : img.pixels) mean += p;
  mean /= static_cast<double>(img.pixels.size());
  // MNIST digits are light strokes on black; a mostly light image is probably inverted.
  if (mean > 127)
    fmt::print(stderr,
               "note: {}: mostly light pixels (mean {:.0f}); MNIST digits are light on a dark "
               "background{}\n",
               path, mean, invert ? "" : " (pass --invert for a dark digit on light paper)");
  return {path, std::move(img.pixels)};
}

std::vector<Input> idx_inputs(const PredictOptions& o, const Checkpoint& c) {
  const IdxArray a = read_idx(o.idx);
  if (a.type != 0x08 || a.dims.size() != 3)
    throw data_error(
        fmt::format("{}: expected an images file (u8, 3 dimensions), found type "
                    "0x{:02x} with {} dimension(s)",
                    o.idx, a.type, a.dims.size()));
  if (a.dims[1] != c.image_rows || a.dims[2] != c.image_cols)
    throw data_error(fmt::format("{}: images are {}x{}; the model expects {}x{}", o.idx, a.dims[1],
                                 a.dims[2], c.image_rows, c.image_cols));
  const auto pixels = static_cast<std::size_t>(c.image_rows * c.image_cols);
  std::vector<Input> in;
  for (int64_t i : o.index) {
    if (i < 0 || i >= static_cast<int64_t>(a.dims[0]))
      throw usage_error(fmt::format("--index {}: {} holds images 0..{}", i, o.idx, a.dims[0] - 1));
    const auto first =
        a.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * pixels);
    Input x{fmt::format("{}[{}]", o.idx, i),
            std::vector<uint8_t>(first, first + static_cast<std::ptrdiff_t>(pixels))};
    if (o.invert)
      for (uint8_t& p : x.pixels) p = static_cast<uint8_t>(255 - p);
    in.push_back(std::move(x));
  }
  return in;
}

// Softmax of one logits row, in double so the ten probabilities sum to 1 closely.
std::vector<double> softmax(const float* logits, int64_t n) {
  double mx = logits[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  std::vector<double> p(static_cast<std::size_t>(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp(logits[i] - mx);
  for (double& v : p) v /= sum;
  return p;
}

int run_predict(PredictOptions& o) {
  if (o.files.empty() && o.idx.empty())
    throw usage_error("predict: give image FILEs, or --idx FILE --index I");
  if (!o.index_text.empty()) o.index = parse_int_list(o.index_text);
  if (!o.idx.empty() && o.index.empty()) throw usage_error("--idx needs --index I (or I,J,...)");
  if (o.idx.empty() && !o.index.empty()) throw usage_error("--index needs --idx FILE");
  const Checkpoint c = load_checkpoint(o.model);
  std::vector<Input> inputs;
  // One unreadable image does not discard the others: each bad one is reported
  // here, the readable ones are classified, and the exit code is 3 at the end.
  nlohmann::json errors = nlohmann::json::array();
  for (const std::string& f : o.files) {
    try {
      inputs.push_back(image_input(f, c, o.invert));
    } catch (const Error& e) {
      if (e.code() != ExitCode::kData) throw;
      fmt::print(stderr, "mnist-mlp: error: {}\n", e.what());
      errors.push_back({{"input", f}, {"error", e.what()}});
    }
  }
  if (!o.idx.empty())
    for (Input& x : idx_inputs(o, c)) inputs.push_back(std::move(x));
  const int bad_exit = static_cast<int>(ExitCode::kData);
  const auto finish = [&] {
    if (errors.empty()) return 0;
    std::fflush(stdout);
    fmt::print(stderr, "mnist-mlp: {} of {} images could not be read; {}\n", errors.size(),
               errors.size() + inputs.size(),
               inputs.empty() ? "nothing was classified" : "the others were classified");
    return bad_exit;
  };
  if (inputs.empty()) {
    if (o.json)
      fmt::print("{}\n", nlohmann::json{{"model", o.model},
                                        {"predictions", nlohmann::json::array()},
                                        {"errors", errors}}
                             .dump());
    return finish();
  }

  const BackendOptions bo = backend_options(o.device);
  std::unique_ptr<Backend> be = make_backend(bo);
  constexpr int64_t kBatch = 256;
  const auto n = static_cast<int64_t>(inputs.size());
  Model model(*be, c.sizes, std::min(kBatch, n), c.adam, c.binarize);
  model.set_state(c.state);
  const int64_t pixels = c.sizes.front();
  Buffer dev = be->alloc(static_cast<std::size_t>(model.max_batch() * pixels));
  std::vector<uint8_t> host(static_cast<std::size_t>(model.max_batch() * pixels));
  std::vector<float> logits;
  nlohmann::json out = nlohmann::json::array();
  for (int64_t first = 0; first < n; first += model.max_batch()) {
    const int64_t batch = std::min(model.max_batch(), n - first);
    for (int64_t i = 0; i < batch; ++i)
      std::copy(inputs[first + i].pixels.begin(), inputs[first + i].pixels.end(),
                host.begin() + i * pixels);
    be->upload(dev.data(), host.data(), static_cast<std::size_t>(batch * pixels));
    model.forward(dev.as<uint8_t>(), batch);
    const CMat l = model.logits(batch);
    logits.resize(static_cast<std::size_t>(l.size()));
    be->download(logits.data(), l.data, logits.size() * sizeof(float));
    for (int64_t i = 0; i < batch; ++i) {
      const std::vector<double> p = softmax(logits.data() + i * l.cols, l.cols);
      const auto cls = static_cast<int64_t>(std::max_element(p.begin(), p.end()) - p.begin());
      const std::string& name = inputs[first + i].name;
      if (o.json) {
        out.push_back({{"input", name}, {"class", cls}, {"probabilities", p}});
        continue;
      }
      std::string probs;
      for (std::size_t k = 0; k < p.size(); ++k) probs += fmt::format(" {}:{:.4f}", k, p[k]);
      fmt::print("{}: {} ({:.2f}%)  p{}\n", name, cls, 100 * p[static_cast<std::size_t>(cls)],
                 probs);
    }
  }
  if (o.json) {
    nlohmann::json doc{{"model", o.model}, {"predictions", out}};
    if (!errors.empty()) doc["errors"] = errors;
    fmt::print("{}\n", doc.dump());
  }
  return finish();
}

}  // namespace

Command add_predict_command(CLI::App& root) {
  auto o = std::make_shared<PredictOptions>();
  CLI::App* app = root.add_subcommand(
      "predict", "Classify 28x28 grayscale images (PGM, PNG) or IDX entries with a checkpoint");
  app->add_option("--model", o->model, "Checkpoint written by train --save")
      ->required()
      ->type_name("FILE")
      ->check(kNonEmpty);
  app->add_option("files", o->files,
                  "Images: PGM (P5/P2) or PNG, 28x28, light digit on a dark background "
                  "(unreadable ones are reported, the others still classified; exit 3)");
  app->add_option("--idx", o->idx, "An IDX images file (raw or .gz) to take images from")
      ->type_name("FILE")
      ->check(kNonEmpty);
  app->add_option("--index", o->index_text, "Which images of --idx, 0-based (I or I,J,...)")
      ->type_name("I[,J...]")
      ->check(kIndexList);
  app->add_flag("--invert", o->invert,
                "Invert pixels first (for a dark digit on a light background)");
  app->add_flag("--json", o->json, "Print one JSON object instead of lines");
  add_device_flags(app, o->device);
  return {app, [o] { return run_predict(*o); }};
}

}  // namespace mlp::cli
