// Errors: every failure inside the library is an mlp::Error carrying the exit
// code the CLI should return. Only main() turns them into a message and an
// exit status, so tests can catch and inspect every failure path.
#pragma once

#include <stdexcept>
#include <string>

namespace mlp {

// Exit codes are part of the CLI contract (documented in README.md).
enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,       // anything not listed below
  kUsage = 2,         // bad flag or flag value
  kData = 3,          // dataset missing or malformed
  kCheckpoint = 4,    // checkpoint missing, corrupt or incompatible; failed save
  kNonFinite = 5,     // loss became NaN/Inf; training stopped
  kDevice = 6,        // CUDA requested but unavailable, or a CUDA/cuBLAS error
  kDiverged = 7,      // the loss exploded (finite but far too large); training stopped
  kInterrupted = 130  // SIGINT (128 + 2), after saving when saving is configured;
                      // SIGTERM exits 143 and SIGHUP 129 (128 + signal) the same way
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

inline Error usage_error(const std::string& m) { return Error(ExitCode::kUsage, m); }
inline Error data_error(const std::string& m) { return Error(ExitCode::kData, m); }
inline Error checkpoint_error(const std::string& m) { return Error(ExitCode::kCheckpoint, m); }
inline Error device_error(const std::string& m) { return Error(ExitCode::kDevice, m); }

}  // namespace mlp
