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

// What a path is when it is not a regular file ("a directory", "a FIFO (named
// pipe)", "a character device", ...), for messages; "" for a regular file.
std::string file_kind(unsigned mode);

// Throws Error(code) unless `path` names a regular file (after symlinks):
// "no such file", "a symbolic link loop", "is a FIFO (named pipe), not a
// regular file", ...; `what` says what it is for. Never opens the path, so a
// FIFO cannot hang it.
void check_regular_file(const std::string& path, ExitCode code, const std::string& what);

// Reads the first up to `n` bytes of a regular file and its size, without
// reading the rest: headers are checked against the file size before a
// whole-file read allocates what the header promises.
std::vector<uint8_t> read_file_head(const std::string& path, std::size_t n, uint64_t& file_size,
                                    ExitCode code, const std::string& what);

// Reads the whole regular file (opened non-blocking, so a FIFO is refused, not waited on). Refuses
// files larger than max_bytes before allocating anything. Messages name the file; `what` says what
// it is for
// ("checkpoint", "image", ...).
std::vector<uint8_t> read_file_bytes(const std::string& path, std::size_t max_bytes, ExitCode code,
                                     const std::string& what);

// Before writing, removes PATH.tmp-PID-N / PATH.probe-PID-N files that a
// killed process left behind (PID no longer running).
void write_file_atomic(const std::string& path, const void* data, std::size_t bytes, ExitCode code,
                       const std::string& what);

// Fails early (before hours of training) when `path` could not be written
// later: its directory is missing or not writable, or `path` exists and is not
// a regular file (e.g. /dev/full, a directory). Creates and removes a probe file.
void check_writable_path(const std::string& path, ExitCode code, const std::string& flag);

// Removes stale PATH.tmp-PID-* and PATH.probe-PID-* files whose process is
// gone; returns how many were removed. write_file_atomic calls it.
int remove_stale_temporaries(const std::string& path);

// An advisory lock (flock) on PATH.lock for as long as the object lives, so
// two runs cannot save to the same checkpoint. A second holder is refused at
// once: Error(code) naming the path and the holder's PID. The lock file is
// removed when released.
class PathLock {
 public:
  PathLock(const std::string& path, ExitCode code, const std::string& flag);
  ~PathLock();
  PathLock(const PathLock&) = delete;
  PathLock& operator=(const PathLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

}  // namespace mlp
