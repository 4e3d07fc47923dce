// Users' own images for `mnist-mlp predict`: PGM (P5 binary and P2 ASCII,
// any maxval up to 65535, scaled to 0..255) and PNG through libpng's
// simplified API (8-bit gray as is; color, palette and alpha are converted to
// 8-bit gray, transparency composited onto black). 16-bit grayscale PNGs keep
// their stored values (scaled to 0..255 like a PGM with maxval 65535, no gamma
// conversion). Sizes are checked against the bytes present, and against the
// expected size when one is given, from the header, before anything is decoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mlp {

inline constexpr int64_t kMaxImageSide = 16384;
inline constexpr std::size_t kMaxImageFileBytes = std::size_t{256} << 20;

struct GrayImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width), row-major, 0 = black
  std::string conversion;       // what was converted on the way ("" when nothing was)
};

// The size an image must have (predict: the checkpoint's); 0 x 0 accepts any.
struct ImageSize {
  int64_t width = 0, height = 0;
};

// Detects the format from the first bytes. Throws Error(kData) naming the
// file and the problem (unknown or unsupported format, malformed header,
// truncated data, values above maxval, ...).
// With `expect` set, an image of another size is refused from its header
// (Error(kData) saying how to resize it), before its pixels are decoded.
GrayImage decode_image(const uint8_t* data, std::size_t size, const std::string& name,
                       const ImageSize& expect = {});
GrayImage read_image(const std::string& path, const ImageSize& expect = {});

GrayImage decode_pgm(const uint8_t* data, std::size_t size, const std::string& name,
                     const ImageSize& expect = {});
GrayImage decode_png(const uint8_t* data, std::size_t size, const std::string& name,
                     const ImageSize& expect = {});

}  // namespace mlp
