// File reads and atomic writes (see include/mlp/file_io.h). POSIX calls are
// used directly because the atomic-write protocol needs fsync on the file and
// on its directory, which iostreams cannot express.
#include "mlp/file_io.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace mlp {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A name no other writer (another process, another thread) picks at the same time.
std::string temp_name(const std::string& path, const char* tag) {
  static std::atomic<unsigned> counter{0};
  return fmt::format("{}.{}-{}-{}", path, tag, static_cast<long>(::getpid()), counter++);
}

// Closes the fd and removes the temporary file unless released: every early
// exit (a throw) cleans up, so a failed save leaves no litter behind.
class TempFile {
 public:
  TempFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }
  int close_fd() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void keep() { path_.clear(); }  // renamed into place: nothing to remove

 private:
  std::string path_;
  int fd_;
};

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, std::size_t max_bytes, ExitCode code,
                                     const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(code, errno == ENOENT ? fmt::format("{}: no such file", path)
                                      : fmt::format("{}: cannot open: {}", path, errno_text()));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw Error(code, fmt::format("{}: cannot stat: {}", path, errno_text()));
  if (S_ISDIR(st.st_mode))
    throw Error(code, fmt::format("{}: is a directory, not a {}", path, what));
  if (!S_ISREG(st.st_mode)) throw Error(code, fmt::format("{}: not a regular file", path));
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw Error(code, fmt::format("{}: {} bytes is more than a {} can be ({} bytes at most)", path,
                                  size, what, max_bytes));
  std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(code, fmt::format("{}: read failed: {}", path, errno_text()));
    if (n == 0) throw Error(code, fmt::format("{}: file shrank while being read", path));
    done += static_cast<std::size_t>(n);
  }
  return bytes;
}

void write_file_atomic(const std::string& path, const void* data, std::size_t bytes, ExitCode code,
                       const std::string& what) {
  const auto fail = [&](const std::string& step) {
    return Error(
        code, fmt::format("{}: cannot save {}: {}; the previous file (if any) is unchanged", path,
                          what, step));
  };
  // rename() would replace a device node or fail late on a directory: refuse up front.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(code,
                fmt::format("{}: cannot save {}: exists and is not a regular file", path, what));
  const std::string tmp = temp_name(path, "tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw fail(fmt::format("cannot create {}: {}", tmp, errno_text()));
  TempFile file(tmp, fd);
  const auto* p = static_cast<const uint8_t*>(data);
  std::size_t left = bytes;
  while (left > 0) {
    const std::size_t chunk = left < (std::size_t{1} << 30) ? left : (std::size_t{1} << 30);
    const ssize_t n = ::write(file.fd(), p, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fail(fmt::format("write to {} failed: {}", tmp, errno_text()));
    if (n == 0) throw fail(fmt::format("write to {} made no progress", tmp));
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at
  // a file whose data never reached the disk.
  if (::fsync(file.fd()) != 0) throw fail(fmt::format("fsync of {} failed: {}", tmp, errno_text()));
  if (file.close_fd() != 0) throw fail(fmt::format("close of {} failed: {}", tmp, errno_text()));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw fail(fmt::format("rename of {} failed: {}", tmp, errno_text()));
  file.keep();
  // The rename itself is durable only once the directory entry is synced.
  const std::string dir = parent_dir(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    throw Error(code, fmt::format("{}: saved, but cannot open directory {} to sync it: {}", path,
                                  dir, errno_text()));
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  // Some filesystems cannot sync a directory (EINVAL); the rename is done either way.
  if (rc != 0 && err != EINVAL)
    throw Error(code, fmt::format("{}: saved, but fsync of directory {} failed: {}", path, dir,
                                  std::strerror(err)));
}

void check_writable_path(const std::string& path, ExitCode code, const std::string& flag) {
  if (path.empty()) throw Error(code, fmt::format("{}: empty path", flag));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      throw Error(code, fmt::format("{} {}: is a directory; give a file name", flag, path));
    if (!S_ISREG(st.st_mode))
      throw Error(code, fmt::format("{} {}: exists and is not a regular file", flag, path));
  }
  const std::string dir = parent_dir(path);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(code, fmt::format("{} {}: directory {} does not exist", flag, path, dir));
  // Create and remove a probe file: the same operation the real save starts with.
  const std::string probe = temp_name(path, "probe");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0)
    throw Error(code,
                fmt::format("{} {}: cannot create files in {}: {}", flag, path, dir, errno_text()));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace mlp
