// Whole-file reads with a size cap, and atomic whole-file writes.
// write_file_atomic never leaves a half-written file at `path`: it writes a
// temporary file in the same directory, checks every write, fsyncs it, renames
// it over `path` and fsyncs the directory. On any failure the temporary file is
// removed, whatever was at `path` before is untouched, and Error(code) is thrown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlp/error.h"

namespace mlp {

// Reads the whole regular file. Refuses files larger than max_bytes before
// allocating anything. Messages name the file; `what` says what it is for
// ("checkpoint", "image", ...).
std::vector<uint8_t> read_file_bytes(const std::string& path, std::size_t max_bytes, ExitCode code,
                                     const std::string& what);

void write_file_atomic(const std::string& path, const void* data, std::size_t bytes, ExitCode code,
                       const std::string& what);

// Fails early (before hours of training) when `path` could not be written
// later: its directory is missing or not writable, or `path` exists and is not
// a regular file (e.g. /dev/full, a directory). Creates and removes a probe file.
void check_writable_path(const std::string& path, ExitCode code, const std::string& flag);

}  // namespace mlp
