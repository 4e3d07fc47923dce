// libFuzzer target: the checkpoint loader on arbitrary bytes, twice: as given
// (header checks, CRCs) and with both CRCs recomputed, so mutations reach the
// field checks behind them. Anything accepted must serialize back to the very
// same bytes (the format has one encoding per checkpoint).
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlp/checkpoint.h"
#include "mlp/error.h"

namespace {

void check(const std::vector<uint8_t>& bytes) {
  try {
    const mlp::Checkpoint c = mlp::parse_checkpoint(bytes.data(), bytes.size(), "fuzz");
    if (mlp::serialize_checkpoint(c) != bytes) __builtin_trap();
  } catch (const mlp::Error&) {
  }
}

void put_le32(std::vector<uint8_t>& b, std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  check(bytes);
  if (bytes.size() >= mlp::kCheckpointHeaderBytes) {
    // Payload CRC (offset 24) first: the header CRC (offset 28) covers it.
    put_le32(
        bytes, 24,
        static_cast<uint32_t>(crc32(0L, bytes.data() + 32, static_cast<uInt>(bytes.size() - 32))));
    put_le32(bytes, 28, static_cast<uint32_t>(crc32(0L, bytes.data(), 28)));
    check(bytes);
  }
  return 0;
}
