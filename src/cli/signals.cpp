// SIGINT handling for training (see signals.h). Global state is
// unavoidable with signals; it is limited to two lock-free atomics.
#include "cli/signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "mlp/error.h"

namespace mlp {
namespace {

std::atomic<Trainer*> g_trainer{nullptr};
std::atomic<int> g_count{0};
struct sigaction g_previous {};
bool g_installed = false;

static_assert(std::atomic<Trainer*>::is_always_lock_free, "handler needs lock-free atomics");
static_assert(std::atomic<int>::is_always_lock_free, "handler needs lock-free atomics");
static_assert(std::atomic<bool>::is_always_lock_free, "Trainer::request_stop needs it");

void say(const char* msg) {
  // Best effort: nothing useful can be done if stderr is gone.
  const ssize_t n = ::write(STDERR_FILENO, msg, std::strlen(msg));
  (void)n;
}

void on_sigint(int) {
  const int count = g_count.fetch_add(1) + 1;
  Trainer* t = g_trainer.load();
  if (count >= 2 || t == nullptr) {
    say("\nmnist-mlp: interrupted; exiting now\n");
    ::_exit(static_cast<int>(ExitCode::kInterrupted));
  }
  say("\nmnist-mlp: interrupt: stopping after the current step (Ctrl-C again to quit at once)\n");
  t->request_stop();
}

}  // namespace

InterruptGuard::InterruptGuard() {
  if (g_installed) throw Error(ExitCode::kFailure, "InterruptGuard: one guard at a time");
  g_count.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads and waits resume instead of failing with EINTR
  if (::sigaction(SIGINT, &sa, &g_previous) != 0)
    throw Error(ExitCode::kFailure, "cannot install the SIGINT handler");
  g_installed = true;
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &g_previous, nullptr);
  g_trainer.store(nullptr);
  g_installed = false;
}

bool InterruptGuard::interrupted() const { return g_count.load() > 0; }

InterruptGuard::Attachment::Attachment(Trainer& t) { g_trainer.store(&t); }
InterruptGuard::Attachment::~Attachment() { g_trainer.store(nullptr); }

}  // namespace mlp
