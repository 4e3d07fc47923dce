// Image writers (see image_writers.h): PGM by hand, PNG through libpng's
// simplified API.
#include "image_writers.h"

#include <fmt/format.h>
#include <png.h>

#include <cstdio>
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

void write_png_black(const std::string& path, int64_t width, int64_t height) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(ExitCode::kFailure, fmt::format("{}: cannot create", path));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    throw Error(ExitCode::kFailure, fmt::format("{}: cannot write PNG", path));
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<png_byte> row(static_cast<std::size_t>(width), 0);
  for (int64_t y = 0; y < height; ++y) png_write_row(png, row.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

void write_png_gray16(const std::string& path, int64_t width, int64_t height,
                      const std::vector<uint16_t>& pixels) {
  // The low-level API, so no gAMA chunk is written: the samples are plain
  // numbers, as PIL and most tools write 16-bit gray.
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(ExitCode::kFailure, fmt::format("{}: cannot create", path));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  std::vector<png_byte> row(static_cast<std::size_t>(width) * 2);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    throw Error(ExitCode::kFailure, fmt::format("{}: cannot write PNG", path));
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 16,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {  // big-endian samples, as PNG stores them
      const uint16_t v = pixels[static_cast<std::size_t>(y * width + x)];
      row[static_cast<std::size_t>(2 * x)] = static_cast<png_byte>(v >> 8);
      row[static_cast<std::size_t>(2 * x + 1)] = static_cast<png_byte>(v & 0xFF);
    }
    png_write_row(png, row.data());
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

}  // namespace mlp::testing
