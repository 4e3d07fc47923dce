// Buffer: move-only owner of one allocation made by a Backend (device memory
// on CUDA, aligned host memory on the CPU; pinned host memory for staging).
// Move-only "to prevent performance accidents": a copy would be a hidden
// device allocation. Moves are noexcept so std::vector<Buffer> moves, never
// copies, when it grows. The destructor never throws.
#pragma once

#include <cstddef>
#include <utility>

namespace mlp {

class Buffer {
 public:
  using FreeFn = void (*)(void*) noexcept;

  Buffer() noexcept = default;
  Buffer(void* ptr, std::size_t bytes, FreeFn free_fn) noexcept
      : ptr_(ptr), bytes_(bytes), free_fn_(free_fn) {}
  ~Buffer() { reset(); }

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)),
        free_fn_(std::exchange(o.free_fn_, nullptr)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      free_fn_ = std::exchange(o.free_fn_, nullptr);
    }
    return *this;
  }

  void reset() noexcept {
    if (ptr_ && free_fn_) free_fn_(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }

  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }
  void* data() const noexcept { return ptr_; }
  std::size_t bytes() const noexcept { return bytes_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  FreeFn free_fn_ = nullptr;
};

}  // namespace mlp
