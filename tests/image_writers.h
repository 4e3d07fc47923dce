// Image writers for the tests and the fuzz seed corpus: the files predict
// reads, made from a GrayImage. Not part of the program (it only reads images).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlp/image_io.h"

namespace mlp::testing {

std::vector<uint8_t> encode_pgm(const GrayImage& img);  // P5, maxval 255
void write_png_gray(const std::string& path, const GrayImage& img);
// A black 8-bit grayscale PNG of any size, written row by row: a 16384x16384
// one never exists in memory (so a test measuring a child's peak memory is
// not polluted by its own).
void write_png_black(const std::string& path, int64_t width, int64_t height);
// 16-bit grayscale PNG holding `pixels` (row-major) as stored samples.
void write_png_gray16(const std::string& path, int64_t width, int64_t height,
                      const std::vector<uint16_t>& pixels);

}  // namespace mlp::testing
