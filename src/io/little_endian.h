// Little-endian encoding for the checkpoint format: every integer and float is
// written and read byte by byte, so a file is the same on any host. A Reader
// that would run past its payload throws a checkpoint error naming the field.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "mlp/error.h"

namespace mlp::io {

class Writer {
 public:
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void f32(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    u32(b);
  }
  void f64(double v) {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    u64(b);
  }
  void floats(const float* p, int64_t n) {
    for (int64_t i = 0; i < n; ++i) f32(p[i]);
  }
  std::vector<uint8_t>& bytes() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  Reader(const uint8_t* p, std::size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}
  std::size_t left() const { return n_ - pos_; }
  uint32_t u32(const char* field) {
    need(4, field);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{p_[pos_ + i]} << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t u64(const char* field) {
    need(8, field);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{p_[pos_ + i]} << (8 * i);
    pos_ += 8;
    return v;
  }
  int64_t i64(const char* field) { return static_cast<int64_t>(u64(field)); }
  float f32(const char* field) {
    const uint32_t b = u32(field);
    float v;
    std::memcpy(&v, &b, 4);
    return v;
  }
  double f64(const char* field) {
    const uint64_t b = u64(field);
    double v;
    std::memcpy(&v, &b, 8);
    return v;
  }

 private:
  void need(std::size_t k, const char* field) {
    if (left() < k)
      throw checkpoint_error(
          fmt::format("{}: checkpoint invalid: payload ends inside field '{}'", name_, field));
  }
  const uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const std::string& name_;
};

}  // namespace mlp::io
