// TimedBackend: see bench_timed_backend.h.
// Allocations: Buffer's free function carries no context, so memory obtained
// from the inner backend is parked in a registry keyed by pointer, and the
// free function drops it from there (which frees it through the inner Buffer).
#include "bench_timed_backend.h"

#include <mutex>
#include <unordered_map>

namespace mlp {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<void*, Buffer> owned;
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: frees may run during static teardown
  return *r;
}

void release(void* p) noexcept {
  Buffer b;
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    auto it = registry().owned.find(p);
    if (it == registry().owned.end()) return;
    b = std::move(it->second);
    registry().owned.erase(it);
  }
  // b frees the memory here, outside the lock
}

void* park(Buffer b, Buffer::FreeFn* free_fn) {
  void* p = b.data();
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().owned.emplace(p, std::move(b));
  *free_fn = release;
  return p;
}

}  // namespace

TimedBackend::~TimedBackend() = default;

void* TimedBackend::alloc_impl(std::size_t bytes, Buffer::FreeFn* free_fn) {
  return park(in_.alloc(bytes), free_fn);
}

void* TimedBackend::alloc_host_impl(std::size_t bytes, Buffer::FreeFn* free_fn) {
  return park(in_.alloc_host(bytes), free_fn);
}

void TimedBackend::gemm_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) {
  if (!timing_) {
    in_.gemm(ta, tb, alpha, a, b, beta, c);
    return;
  }
  const uint64_t from = in_.record_timestamp();
  in_.gemm(ta, tb, alpha, a, b, beta, c);
  spans_.push_back({tag_, from, in_.record_timestamp()});
}

void TimedBackend::collect(double* ms, int tags) {
  for (const Span& s : spans_)
    if (s.tag >= 0 && s.tag < tags) ms[s.tag] += in_.elapsed_ms(s.from, s.to);
  spans_.clear();
}

}  // namespace mlp
