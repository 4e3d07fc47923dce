// Export to safetensors (huggingface.co/docs/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON (space-padded to a multiple
// of 8), then the raw little-endian tensor data. Tensors are named and shaped
// as a PyTorch nn.Linear stack in an nn.ModuleList called `layers` expects:
// layers.L.weight is (fan_out, fan_in) -- our (fan_in, fan_out) W transposed --
// and layers.L.bias is (fan_out), all F32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlp/checkpoint.h"

namespace mlp {

std::vector<uint8_t> safetensors_bytes(const Checkpoint& c);
// Atomic write (see file_io.h); Error(kCheckpoint) when it fails.
void export_safetensors(const Checkpoint& c, const std::string& path);

}  // namespace mlp
