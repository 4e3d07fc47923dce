// Image decoding for predict (see include/mlp/image_io.h). PGM is parsed here
// (it is a few lines of text and a raster); PNG goes through libpng's
// simplified API, which reports errors through png_image.message instead of
// longjmp, so a malformed file is an Error like any other.
#include "mlp/image_io.h"

#include <fmt/format.h>
#include <png.h>

#include <cctype>
#include <cstring>

#include "mlp/error.h"
#include "mlp/file_io.h"

namespace mlp {
namespace {

// Netpbm header tokens: whitespace-separated decimals, '#' comments to end of line.
class PnmReader {
 public:
  PnmReader(const uint8_t* p, std::size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}
  std::size_t pos() const { return pos_; }
  void skip_space_and_comments() {
    while (pos_ < n_) {
      if (p_[pos_] == '#') {
        while (pos_ < n_ && p_[pos_] != '\n' && p_[pos_] != '\r') ++pos_;
      } else if (std::isspace(p_[pos_])) {
        ++pos_;
      } else {
        break;
      }
    }
  }
  int64_t number(const char* what, int64_t max) {
    skip_space_and_comments();
    if (pos_ >= n_) throw data_error(fmt::format("{}: PGM truncated: no {}", name_, what));
    if (!std::isdigit(p_[pos_]))
      throw data_error(fmt::format("{}: PGM malformed: expected the {}, found byte 0x{:02x}", name_,
                                   what, p_[pos_]));
    int64_t v = 0;
    while (pos_ < n_ && std::isdigit(p_[pos_])) {
      v = v * 10 + (p_[pos_++] - '0');
      if (v > max) throw data_error(fmt::format("{}: PGM {} is larger than {}", name_, what, max));
    }
    return v;
  }

 private:
  const uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 2;  // after the magic
  const std::string& name_;
};

uint8_t scale_to_u8(int64_t v, int64_t maxval) {
  return static_cast<uint8_t>((v * 255 + maxval / 2) / maxval);
}

void check_expected(const std::string& name, int64_t width, int64_t height,
                    const ImageSize& expect) {
  if (expect.width == 0 || (width == expect.width && height == expect.height)) return;
  throw data_error(fmt::format(
      "{}: image is {}x{}; the model expects {}x{} grayscale (resize it, e.g. convert IN "
      "-resize {}x{}! OUT.png)",
      name, width, height, expect.width, expect.height, expect.width, expect.height));
}

// Reads from memory for libpng's low-level API.
struct PngSource {
  const uint8_t* data;
  std::size_t size;
  std::size_t pos;
};

void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->size - src->pos < n) png_error(png, "truncated");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

// 16-bit grayscale through the low-level API: the simplified API would treat
// the samples as linear light and gamma-encode them to 8 bits (76 -> 147);
// here they are taken as stored, like a PGM's, and rounded to 8 bits.
// Everything libpng's longjmp can skip is set up before setjmp.
bool read_gray16(const uint8_t* data, std::size_t size, std::vector<uint8_t>& pixels,
                 png_uint_32 width, png_uint_32 height, std::string& error) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) {
    error = "out of memory";
    return false;
  }
  png_infop info = png_create_info_struct(png);
  std::vector<uint8_t> raw(static_cast<std::size_t>(width) * height * 2);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y)
    rows[y] = raw.data() + static_cast<std::size_t>(y) * width * 2;
  PngSource src{data, size, 0};
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    error = "corrupt 16-bit data";
    return false;
  }
  png_set_read_fn(png, &src, png_read_memory);
  png_read_info(png, info);
  if (png_get_image_width(png, info) != width || png_get_image_height(png, info) != height ||
      png_get_bit_depth(png, info) != 16 || png_get_color_type(png, info) != PNG_COLOR_TYPE_GRAY ||
      png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;  // not plain 16-bit gray: the caller uses the simplified API
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  pixels.resize(static_cast<std::size_t>(width) * height);
  for (std::size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = scale_to_u8((int64_t{raw[2 * i]} << 8) | raw[2 * i + 1], 65535);  // big-endian
  return true;
}

bool starts_with(const uint8_t* p, std::size_t n, const char* sig, std::size_t k) {
  return n >= k && std::memcmp(p, sig, k) == 0;
}

}  // namespace

GrayImage decode_pgm(const uint8_t* data, std::size_t size, const std::string& name,
                     const ImageSize& expect) {
  if (size < 2 || data[0] != 'P')
    throw data_error(fmt::format("{}: not a PGM image (no 'P5'/'P2' magic)", name));
  const char kind = static_cast<char>(data[1]);
  if (kind == '1' || kind == '4')
    throw data_error(
        fmt::format("{}: a PBM bitmap; convert it to an 8-bit grayscale PGM or PNG", name));
  if (kind == '3' || kind == '6')
    throw data_error(
        fmt::format("{}: a PPM color image; convert it to grayscale PGM (P5) or PNG", name));
  if (kind != '5' && kind != '2')
    throw data_error(
        fmt::format("{}: unsupported Netpbm kind 'P{}' (expected P5 or P2)", name, kind));
  if (size < 3 || !(std::isspace(data[2]) || data[2] == '#'))
    throw data_error(fmt::format("{}: PGM malformed: no whitespace after the magic", name));
  PnmReader r(data, size, name);
  GrayImage img;
  img.width = r.number("width", kMaxImageSide);
  img.height = r.number("height", kMaxImageSide);
  check_expected(name, img.width, img.height, expect);
  const int64_t maxval = r.number("maxval", 65535);
  if (img.width == 0 || img.height == 0 || maxval == 0)
    throw data_error(fmt::format("{}: PGM header has width {}, height {}, maxval {}: none may be 0",
                                 name, img.width, img.height, maxval));
  const auto count = static_cast<std::size_t>(img.width * img.height);
  if (kind == '5') {
    std::size_t pos = r.pos();
    if (pos >= size || !std::isspace(data[pos]))
      throw data_error(fmt::format("{}: PGM truncated or malformed after the header", name));
    ++pos;  // exactly one whitespace byte separates the header from the raster
    const std::size_t bps = maxval < 256 ? 1 : 2;
    const std::size_t need = count * bps;
    if (size - pos < need)
      throw data_error(fmt::format("{}: PGM truncated: {}x{} pixels need {} bytes, {} present",
                                   name, img.width, img.height, need, size - pos));
    if (size - pos > need)
      throw data_error(
          fmt::format("{}: {} trailing bytes after the PGM raster (several images "
                      "in one file are not supported)",
                      name, size - pos - need));
    img.pixels.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      const int64_t v =
          bps == 1 ? data[pos + i] : (int64_t{data[pos + 2 * i]} << 8) | data[pos + 2 * i + 1];
      if (v > maxval)
        throw data_error(fmt::format("{}: pixel {} is {}, above maxval {}", name, i, v, maxval));
      img.pixels[i] = maxval == 255 ? static_cast<uint8_t>(v) : scale_to_u8(v, maxval);
    }
  } else {
    // Each ASCII pixel takes at least two bytes ("0 "), so this bounds the allocation by the file.
    if (count > size)
      throw data_error(fmt::format("{}: PGM truncated: {}x{} pixels cannot fit in {} bytes", name,
                                   img.width, img.height, size));
    img.pixels.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      const int64_t v = r.number("pixel value", 65535);
      if (v > maxval)
        throw data_error(fmt::format("{}: pixel {} is {}, above maxval {}", name, i, v, maxval));
      img.pixels[i] = maxval == 255 ? static_cast<uint8_t>(v) : scale_to_u8(v, maxval);
    }
    r.skip_space_and_comments();
    if (r.pos() != size)
      throw data_error(fmt::format("{}: unexpected data after the {} PGM pixels", name, count));
  }
  if (maxval != 255) img.conversion = fmt::format("scaled from maxval {} to 255", maxval);
  return img;
}

GrayImage decode_png(const uint8_t* data, std::size_t size, const std::string& name,
                     const ImageSize& expect) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data, size))
    throw data_error(fmt::format("{}: unreadable PNG: {}", name, image.message));
  if (image.width == 0 || image.height == 0 || image.width > kMaxImageSide ||
      image.height > kMaxImageSide) {
    png_image_free(&image);
    throw data_error(fmt::format("{}: PNG is {}x{}; at most {}x{} is accepted", name, image.width,
                                 image.height, kMaxImageSide, kMaxImageSide));
  }
  try {
    check_expected(name, image.width, image.height, expect);  // from the header, before decoding
  } catch (...) {
    png_image_free(&image);
    throw;
  }
  GrayImage img;
  img.width = image.width;
  img.height = image.height;
  if (image.format == PNG_FORMAT_LINEAR_Y) {  // 16-bit gray, no alpha
    std::string error;
    if (read_gray16(data, size, img.pixels, image.width, image.height, error)) {
      png_image_free(&image);
      img.conversion = "16-bit scaled to 8-bit";
      return img;
    }
    if (!error.empty()) {
      png_image_free(&image);
      throw data_error(fmt::format("{}: corrupt PNG: {}", name, error));
    }
  }
  std::vector<std::string> notes;
  if (image.format & PNG_FORMAT_FLAG_COLOR) notes.push_back("color converted to gray");
  if (image.format & PNG_FORMAT_FLAG_ALPHA) notes.push_back("transparency composited onto black");
  if (image.format & PNG_FORMAT_FLAG_LINEAR) notes.push_back("16-bit converted to 8-bit");
  image.format = PNG_FORMAT_GRAY;
  // Zero-filled: with no background given, libpng composites alpha onto the
  // buffer's contents, i.e. onto black, the MNIST background.
  img.pixels.assign(PNG_IMAGE_SIZE(image), 0);
  if (!png_image_finish_read(&image, nullptr, img.pixels.data(), 0, nullptr))
    throw data_error(fmt::format("{}: corrupt PNG: {}", name, image.message));
  for (std::size_t i = 0; i < notes.size(); ++i) img.conversion += (i ? ", " : "") + notes[i];
  return img;
}

GrayImage decode_image(const uint8_t* data, std::size_t size, const std::string& name,
                       const ImageSize& expect) {
  if (size == 0) throw data_error(fmt::format("{}: file is empty", name));
  if (starts_with(data, size, "\x89PNG\r\n\x1a\n", 8)) return decode_png(data, size, name, expect);
  if (data[0] == 'P' && size >= 2 && data[1] >= '1' && data[1] <= '7')
    return decode_pgm(data, size, name, expect);
  std::string what = "not a PNG or PGM image";
  if (starts_with(data, size, "\xff\xd8\xff", 3)) what = "JPEG images are not supported";
  if (starts_with(data, size, "GIF8", 4)) what = "GIF images are not supported";
  if (starts_with(data, size, "BM", 2)) what = "BMP images are not supported";
  throw data_error(
      fmt::format("{}: {}; give a 28x28 grayscale PNG or PGM (e.g. convert IN "
                  "-colorspace Gray -resize 28x28! OUT.png)",
                  name, what));
}

GrayImage read_image(const std::string& path, const ImageSize& expect) {
  const std::vector<uint8_t> bytes =
      read_file_bytes(path, kMaxImageFileBytes, ExitCode::kData, "image");
  return decode_image(bytes.data(), bytes.size(), path, expect);
}

}  // namespace mlp
