// Image writers (see image_writers.h): PGM by hand, PNG through libpng's
// simplified API.
#include "image_writers.h"

#include <fmt/format.h>
#include <png.h>

#include <cstring>

#include "mlp/error.h"

namespace mlp::testing {

std::vector<uint8_t> encode_pgm(const GrayImage& img) {
  const std::string header = fmt::format("P5\n{} {}\n255\n", img.width, img.height);
  std::vector<uint8_t> out(header.begin(), header.end());
  out.insert(out.end(), img.pixels.begin(), img.pixels.end());
  return out;
}

void write_png_gray(const std::string& path, const GrayImage& img) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(img.width);
  image.height = static_cast<png_uint_32>(img.height);
  image.format = PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&image, path.c_str(), 0, img.pixels.data(), 0, nullptr))
    throw Error(ExitCode::kFailure, fmt::format("{}: cannot write PNG: {}", path, image.message));
}

void write_png_gray16(const std::string& path, int64_t width, int64_t height,
                      const std::vector<uint16_t>& pixels) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_LINEAR_Y;  // 16-bit samples, written as given
  if (!png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr))
    throw Error(ExitCode::kFailure, fmt::format("{}: cannot write PNG: {}", path, image.message));
}

}  // namespace mlp::testing
