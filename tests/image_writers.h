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
// 16-bit grayscale PNG holding `pixels` (row-major) as stored samples.
void write_png_gray16(const std::string& path, int64_t width, int64_t height,
                      const std::vector<uint16_t>& pixels);

}  // namespace mlp::testing
