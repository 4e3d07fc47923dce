// Signal handling for training (see signals.h). Global state is unavoidable
// with signals; it is limited to a few lock-free atomics.
#include "cli/signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "cli/reporter.h"
#include "mlp/error.h"

namespace mlp {
namespace {

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int kStopCount = sizeof(kStopSignals) / sizeof(kStopSignals[0]);

std::atomic<Trainer*> g_trainer{nullptr};
std::atomic<int> g_count{0};
std::atomic<int> g_first_signal{0};
std::atomic<bool> g_stdout_closed{false};
struct sigaction g_previous[kStopCount] {};
bool g_installed = false;

static_assert(std::atomic<Trainer*>::is_always_lock_free, "handler needs lock-free atomics");
static_assert(std::atomic<int>::is_always_lock_free, "handler needs lock-free atomics");
static_assert(std::atomic<bool>::is_always_lock_free, "Trainer::request_stop needs it");

// msg starts with a newline, which ends a progress bar's line; where the bar
// could be erased instead, the message takes its place.
void say(const char* msg) {
  if (cli::Reporter::clear_line_async_signal_safe() && msg[0] == '\n') ++msg;
  // Best effort: nothing useful can be done if stderr is gone.
  const ssize_t n = ::write(STDERR_FILENO, msg, std::strlen(msg));
  (void)n;
}

void on_stop_signal(int sig) {
  const int saved_errno = errno;
  const int count = g_count.fetch_add(1) + 1;
  int expected = 0;
  g_first_signal.compare_exchange_strong(expected, sig);
  Trainer* t = g_trainer.load();
  if (count >= 2 || t == nullptr) {
    say(sig == SIGINT    ? "\nmnist-mlp: interrupted; exiting now\n"
        : sig == SIGTERM ? "\nmnist-mlp: terminated (SIGTERM); exiting now\n"
                         : "\nmnist-mlp: hangup (SIGHUP); exiting now\n");
    ::_exit(128 + sig);
  }
  say(sig == SIGINT    ? "\nmnist-mlp: interrupt: stopping after the current step (Ctrl-C again to "
                         "quit at once)\n"
      : sig == SIGTERM ? "\nmnist-mlp: SIGTERM: stopping after the current step\n"
                       : "\nmnist-mlp: SIGHUP: stopping after the current step\n");
  t->request_stop();
  errno = saved_errno;
}

// A pipe whose reader is gone polls as POLLERR on the write end.
bool broken(int fd) {
  struct pollfd p {};
  p.fd = fd;
  p.events = POLLOUT;
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
}

void on_sigpipe(int) {
  const int saved_errno = errno;
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    if (!broken(fd)) continue;
    const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) continue;
    if (fd == STDOUT_FILENO) g_stdout_closed.store(true);
    ::dup2(null_fd, fd);
    ::close(null_fd);
    if (fd == STDOUT_FILENO)
      say("mnist-mlp: warning: standard output was closed (broken pipe); its lines are "
          "discarded from here on, the command goes on\n");
  }
  errno = saved_errno;
}

}  // namespace

void install_broken_pipe_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigpipe;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGPIPE, &sa, nullptr);
}

bool stdout_pipe_closed() { return g_stdout_closed.load(); }

InterruptGuard::InterruptGuard() {
  if (g_installed) throw Error(ExitCode::kFailure, "InterruptGuard: one guard at a time");
  g_count.store(0);
  g_first_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : kStopSignals) sigaddset(&sa.sa_mask, sig);  // one handler at a time
  sa.sa_flags = SA_RESTART;  // blocking reads and waits resume instead of failing with EINTR
  for (int i = 0; i < kStopCount; ++i)
    if (::sigaction(kStopSignals[i], &sa, &g_previous[i]) != 0)
      throw Error(ExitCode::kFailure, "cannot install the SIGINT/SIGTERM/SIGHUP handler");
  g_installed = true;
}

InterruptGuard::~InterruptGuard() {
  for (int i = 0; i < kStopCount; ++i) ::sigaction(kStopSignals[i], &g_previous[i], nullptr);
  g_trainer.store(nullptr);
  g_installed = false;
}

bool InterruptGuard::interrupted() const { return g_count.load() > 0; }
int InterruptGuard::signal_number() const { return g_first_signal.load(); }

const char* InterruptGuard::signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "Ctrl-C (SIGINT)";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

InterruptGuard::Attachment::Attachment(Trainer& t) { g_trainer.store(&t); }
InterruptGuard::Attachment::~Attachment() { g_trainer.store(nullptr); }

}  // namespace mlp
