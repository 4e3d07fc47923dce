// libFuzzer target: decode_image (PGM P5/P2 parser, PNG through libpng) on
// arbitrary bytes. Accepted images must have pixels for every width x height.
#include <cstddef>
#include <cstdint>

#include "mlp/error.h"
#include "mlp/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    const mlp::GrayImage img = mlp::decode_image(data, size, "fuzz");
    if (img.width <= 0 || img.height <= 0 ||
        img.pixels.size() != static_cast<std::size_t>(img.width * img.height))
      __builtin_trap();
  } catch (const mlp::Error&) {
  }
  return 0;
}
