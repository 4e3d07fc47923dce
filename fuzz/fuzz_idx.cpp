// libFuzzer target: parse_idx on arbitrary bytes. Any input must either parse
// or throw mlp::Error; a crash, a sanitizer report or a huge allocation is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mlp/dataset.h"
#include "mlp/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    const mlp::IdxArray a = mlp::parse_idx(bytes, "fuzz");
    // Accepted: the payload must be exactly what the dimensions describe.
    std::size_t n = a.dims.empty() ? 0 : 1;
    for (uint32_t d : a.dims) n *= d;
    const std::size_t elem = a.type == 0x0B                     ? 2
                             : a.type == 0x0C || a.type == 0x0D ? 4
                             : a.type == 0x0E                   ? 8
                                                                : 1;
    if (a.data.size() != n * elem) __builtin_trap();
  } catch (const mlp::Error&) {
  }
  return 0;
}
