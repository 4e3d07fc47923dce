// File reads and atomic writes (see include/mlp/file_io.h). POSIX calls are
// used directly because the atomic-write protocol needs fsync on the file and
// on its directory, which iostreams cannot express.
#include "mlp/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
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

std::string file_kind(unsigned mode) {
  if (S_ISREG(mode)) return "";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

namespace {

// The message for a path that open() or stat() refused with errno `err`.
std::string open_failure(const std::string& path, int err) {
  if (err == ENOENT) return fmt::format("{}: no such file", path);
  if (err == ELOOP) return fmt::format("{}: a symbolic link loop, not a file", path);
  if (err == ENOTDIR) return fmt::format("{}: a part of the path is not a directory", path);
  return fmt::format("{}: cannot open: {}", path, std::strerror(err));
}

std::string kind_message(const std::string& path, unsigned mode, const std::string& what) {
  return fmt::format("{}: is {}, not a regular file ({} expected)", path, file_kind(mode), what);
}

// Opens a regular file for reading. O_NONBLOCK: opening a FIFO would otherwise
// wait for a writer forever; the kind is checked on the descriptor, so a path
// swapped between a stat and the open cannot slip through.
int open_regular(const std::string& path, ExitCode code, const std::string& what, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(code, open_failure(path, errno));
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(code, fmt::format("{}: cannot stat: {}", path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(code, kind_message(path, st.st_mode, what));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

struct Closer {
  int fd;
  ~Closer() { ::close(fd); }
};

void read_exactly(int fd, uint8_t* dst, std::size_t n, const std::string& path, ExitCode code) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t got = ::read(fd, dst + done, n - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(code, fmt::format("{}: read failed: {}", path, errno_text()));
    if (got == 0) throw Error(code, fmt::format("{}: file shrank while being read", path));
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace

void check_regular_file(const std::string& path, ExitCode code, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(code, open_failure(path, errno));
  if (!S_ISREG(st.st_mode)) throw Error(code, kind_message(path, st.st_mode, what));
}

std::vector<uint8_t> read_file_head(const std::string& path, std::size_t n, uint64_t& file_size,
                                    ExitCode code, const std::string& what) {
  struct stat st {};
  const int fd = open_regular(path, code, what, st);
  Closer closer{fd};
  file_size = static_cast<uint64_t>(st.st_size);
  std::vector<uint8_t> head(static_cast<std::size_t>(file_size < n ? file_size : n));
  read_exactly(fd, head.data(), head.size(), path, code);
  return head;
}

std::vector<uint8_t> read_file_bytes(const std::string& path, std::size_t max_bytes, ExitCode code,
                                     const std::string& what) {
  struct stat st {};
  const int fd = open_regular(path, code, what, st);
  Closer closer{fd};
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes)
    throw Error(code, fmt::format("{}: {} bytes is more than the {} limit of {} bytes", path, size,
                                  what, max_bytes));
  std::vector<uint8_t> bytes(static_cast<std::size_t>(size));
  read_exactly(fd, bytes.data(), bytes.size(), path, code);
  return bytes;
}

namespace {

bool process_gone(long pid) {
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

int remove_stale_temporaries(const std::string& path) {
  const std::string dir = parent_dir(path);
  const std::size_t slash = path.find_last_of('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  int removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    for (const char* tag : {".tmp-", ".probe-"}) {
      const std::string prefix = base + tag;
      if (name.compare(0, prefix.size(), prefix) != 0) continue;
      // PATH.tmp-PID-N: only a file whose writer has exited is stale.
      char* end = nullptr;
      const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
      if (end == name.c_str() + prefix.size() || *end != '-') continue;
      if (pid != static_cast<long>(::getpid()) && process_gone(pid) &&
          ::unlink((dir + "/" + name).c_str()) == 0)
        ++removed;
    }
  }
  ::closedir(d);
  return removed;
}

PathLock::PathLock(const std::string& path, ExitCode code, const std::string& flag)
    : lock_path_(path + ".lock") {
  // The lock file can be removed by its holder between our open and flock;
  // holding a lock on an unlinked file would protect nothing, so check that
  // the locked inode is still the one at the path, and retry if not.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
      throw Error(code, fmt::format("{} {}: cannot create the lock file {}: {}", flag, path,
                                    lock_path_, errno_text()));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[32] = {};
      const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
      ::close(fd);
      if (err == EWOULDBLOCK) {
        const std::string holder =
            n > 0 ? fmt::format(" (process {})", std::string(buf, static_cast<std::size_t>(n)))
                  : "";
        throw Error(code, fmt::format("{} {}: another mnist-mlp run{} is saving to this path; "
                                      "give each run its own --save file",
                                      flag, path, holder));
      }
      throw Error(code, fmt::format("{} {}: cannot lock {}: {}", flag, path, lock_path_,
                                    std::strerror(err)));
    }
    struct stat held {
    }, now{};
    if (::fstat(fd, &held) == 0 && ::stat(lock_path_.c_str(), &now) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
      fd_ = fd;
      const std::string pid = std::to_string(static_cast<long>(::getpid()));
      if (::ftruncate(fd_, 0) == 0) {
        const ssize_t w = ::pwrite(fd_, pid.data(), pid.size(), 0);
        (void)w;  // the PID is only a hint in the message of a refused second run
      }
      return;
    }
    ::close(fd);
  }
  throw Error(
      code, fmt::format("{} {}: cannot lock {}: it keeps being replaced", flag, path, lock_path_));
}

PathLock::~PathLock() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while still locked: nobody can be holding it
  ::close(fd_);
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
  remove_stale_temporaries(path);  // a killed earlier save's litter (12-19 MB each)
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
