// The checked half of the Backend seam: every public op validates shapes and
// pointers once here, so neither implementation repeats the checks and a
// shape bug fails loudly on both with the same message.
#include "mlp/backend.h"

#include <fmt/format.h>

#include "mlp/error.h"

namespace mlp {
namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw Error(ExitCode::kFailure, fmt::format("backend op {}: {}", op, what));
}

void check_mat(const char* op, const char* name, const float* data, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0)
    fail(op, fmt::format("{} has empty or negative shape ({}, {})", name, rows, cols));
  if (data == nullptr) fail(op, fmt::format("{} is null", name));
}

// Whether `a` and `b` (n floats each) share any element.
bool overlaps(const float* a, const float* b, int64_t n) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  const auto bytes = static_cast<uintptr_t>(n) * sizeof(float);
  return x < y + bytes && y < x + bytes;
}

void check_gemm(const char* op, Trans ta, Trans tb, CMat a, CMat b, Mat c) {
  check_mat(op, "a", a.data, a.rows, a.cols);
  check_mat(op, "b", b.data, b.rows, b.cols);
  check_mat(op, "c", c.data, c.rows, c.cols);
  const int64_t m = ta == Trans::kNo ? a.rows : a.cols;
  const int64_t ka = ta == Trans::kNo ? a.cols : a.rows;
  const int64_t kb = tb == Trans::kNo ? b.rows : b.cols;
  const int64_t n = tb == Trans::kNo ? b.cols : b.rows;
  if (ka != kb || c.rows != m || c.cols != n)
    fail(op,
         fmt::format("op(a) is {}x{}, op(b) is {}x{}, c is {}x{}", m, ka, kb, n, c.rows, c.cols));
}

}  // namespace

Buffer Backend::alloc(std::size_t bytes) {
  if (bytes == 0) return {};
  Buffer::FreeFn free_fn = nullptr;
  void* p = alloc_impl(bytes, &free_fn);
  return Buffer(p, bytes, free_fn);
}

Buffer Backend::alloc_host(std::size_t bytes) {
  if (bytes == 0) return {};
  Buffer::FreeFn free_fn = nullptr;
  void* p = alloc_host_impl(bytes, &free_fn);
  return Buffer(p, bytes, free_fn);
}

void Backend::upload(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (!dst || !src) fail("upload", "null pointer");
  upload_impl(dst, src, bytes);
}

void Backend::download(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (!dst || !src) fail("download", "null pointer");
  download_impl(dst, src, bytes);
}

uint64_t Backend::upload_async(void* dst, const void* src, std::size_t bytes, uint64_t after) {
  if (!dst || !src || bytes == 0) fail("upload_async", "null pointer or empty copy");
  return upload_async_impl(dst, src, bytes, after);
}

uint64_t Backend::download_async(void* dst, const void* src, std::size_t bytes) {
  if (!dst || !src || bytes == 0) fail("download_async", "null pointer or empty copy");
  return download_async_impl(dst, src, bytes);
}

void Backend::gemm(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) {
  check_gemm("gemm", ta, tb, a, b, c);
  if (!gemm_spans_) {
    gemm_impl(ta, tb, alpha, a, b, beta, c);
    return;
  }
  const uint64_t from = record_timestamp();
  gemm_impl(ta, tb, alpha, a, b, beta, c);
  gemm_spans_->push_back({from, record_timestamp()});
}

std::vector<int64_t> Backend::gemm_row_blocks(Trans ta, Trans tb, CMat a, CMat b, Mat c) const {
  check_gemm("gemm_row_blocks", ta, tb, a, b, c);
  std::vector<int64_t> rows = gemm_row_blocks_impl(ta, tb, a, b, c);
  for (std::size_t i = 1; i < rows.size(); ++i)
    if (rows[i] <= rows[i - 1])
      fail("gemm_row_blocks", fmt::format("row bounds not increasing at {}", i));
  if (rows.size() < 2 || rows.front() != 0 || rows.back() != c.rows)
    fail("gemm_row_blocks", fmt::format("row bounds do not cover the {} rows of c", c.rows));
  return rows;
}

std::vector<int64_t> Backend::gemm_row_blocks_impl(Trans, Trans, CMat, CMat, Mat c) const {
  return {0, c.rows};
}

void Backend::gemm_rows(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                        int64_t row_begin, int64_t row_end) {
  check_gemm("gemm_rows", ta, tb, a, b, c);
  if (row_begin < 0 || row_begin >= row_end || row_end > c.rows)
    fail("gemm_rows",
         fmt::format("rows [{}, {}) outside the {} rows of c", row_begin, row_end, c.rows));
  gemm_rows_impl(ta, tb, alpha, a, b, beta, c, row_begin, row_end);
}

void Backend::gemm_rows_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                             int64_t row_begin, int64_t row_end) {
  // One block (gemm_row_blocks_impl's default): the whole GEMM.
  if (row_begin != 0 || row_end != c.rows)
    fail("gemm_rows",
         fmt::format("rows [{}, {}) are not a block of this backend's GEMM", row_begin, row_end));
  gemm_impl(ta, tb, alpha, a, b, beta, c);
}

void Backend::u8_to_float(const uint8_t* in, Mat out, bool binarize) {
  check_mat("u8_to_float", "out", out.data, out.rows, out.cols);
  if (!in) fail("u8_to_float", "input is null");
  u8_to_float_impl(in, out, binarize);
}

void Backend::bias_relu_forward(Mat z, const float* bias) {
  check_mat("bias_relu_forward", "z", z.data, z.rows, z.cols);
  if (!bias) fail("bias_relu_forward", "bias is null");
  bias_relu_forward_impl(z, bias);
}

void Backend::bias_forward(Mat z, const float* bias) {
  check_mat("bias_forward", "z", z.data, z.rows, z.cols);
  if (!bias) fail("bias_forward", "bias is null");
  bias_forward_impl(z, bias);
}

void Backend::relu_backward(Mat grad, CMat act) {
  check_mat("relu_backward", "grad", grad.data, grad.rows, grad.cols);
  check_mat("relu_backward", "act", act.data, act.rows, act.cols);
  if (grad.rows != act.rows || grad.cols != act.cols)
    fail("relu_backward",
         fmt::format("grad is {}x{} but act is {}x{}", grad.rows, grad.cols, act.rows, act.cols));
  relu_backward_impl(grad, act);
}

void Backend::bias_grad(CMat grad, float* db) {
  check_mat("bias_grad", "grad", grad.data, grad.rows, grad.cols);
  if (!db) fail("bias_grad", "db is null");
  bias_grad_impl(grad, db);
}

void Backend::softmax_xent(CMat logits, const uint8_t* labels, float* dlogits, double* metrics) {
  check_mat("softmax_xent", "logits", logits.data, logits.rows, logits.cols);
  if (logits.cols > 256) fail("softmax_xent", "more than 256 classes (labels are uint8)");
  if (!labels || !metrics) fail("softmax_xent", "labels or metrics is null");
  if (dlogits && overlaps(logits.data, dlogits, logits.size()))
    fail("softmax_xent", "dlogits overlaps logits (it is not computed in place)");
  softmax_xent_impl(logits, labels, dlogits, metrics);
}

void Backend::adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
                        OptimizerState* state) {
  // The hyperparameters are in backend memory; Model::set_optimizer checked them.
  if (n <= 0) fail("adam_step", fmt::format("n = {}", n));
  if (!params || !grads || !m || !v || !state) fail("adam_step", "null pointer");
  adam_step_impl(params, grads, m, v, n, state);
}

// ---- step-plan ops ------------------------------------------------------------

void Backend::relu_backward_bias_grad(Mat grad, CMat act, float* db) {
  check_mat("relu_backward_bias_grad", "grad", grad.data, grad.rows, grad.cols);
  check_mat("relu_backward_bias_grad", "act", act.data, act.rows, act.cols);
  if (grad.rows != act.rows || grad.cols != act.cols)
    fail("relu_backward_bias_grad",
         fmt::format("grad is {}x{} but act is {}x{}", grad.rows, grad.cols, act.rows, act.cols));
  if (!db) fail("relu_backward_bias_grad", "db is null");
  relu_backward_bias_grad_impl(grad, act, db);
}

void Backend::softmax_xent_backward(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                                    double* metrics, OptimizerState* step_counter) {
  const char* op = "softmax_xent_backward";
  check_mat(op, "logits", logits.data, logits.rows, logits.cols);
  check_mat(op, "dlogits", dlogits.data, dlogits.rows, dlogits.cols);
  if (dlogits.rows != logits.rows || dlogits.cols != logits.cols)
    fail(op, fmt::format("logits are {}x{} but dlogits {}x{}", logits.rows, logits.cols,
                         dlogits.rows, dlogits.cols));
  if (logits.cols > 256) fail(op, "more than 256 classes (labels are uint8)");
  if (!labels || !metrics || !db) fail(op, "labels, metrics or db is null");
  if (overlaps(logits.data, dlogits.data, logits.size()))
    fail(op, "dlogits overlaps logits (it is not computed in place)");
  softmax_xent_backward_impl(logits, labels, dlogits, db, metrics, step_counter);
}

void Backend::adam_update(float* params, const float* grads, float* m, float* v, int64_t n,
                          const OptimizerState* state) {
  if (n <= 0) fail("adam_update", fmt::format("n = {}", n));
  if (!params || !grads || !m || !v || !state) fail("adam_update", "null pointer");
  adam_update_impl(params, grads, m, v, n, state);
}

void Backend::gemm_bias_act(CMat x, CMat w, const float* bias, bool relu, Mat out) {
  if (!bias) fail("gemm_bias_act", "bias is null");
  if (x.cols != w.rows || out.rows != x.rows || out.cols != w.cols)
    fail("gemm_bias_act", fmt::format("x is {}x{}, w is {}x{}, out is {}x{}", x.rows, x.cols,
                                      w.rows, w.cols, out.rows, out.cols));
  check_mat("gemm_bias_act", "x", x.data, x.rows, x.cols);
  check_mat("gemm_bias_act", "w", w.data, w.rows, w.cols);
  check_mat("gemm_bias_act", "out", out.data, out.rows, out.cols);
  gemm_bias_act_impl(x, w, bias, relu, out);
}

void Backend::gemm_bias_act_impl(CMat x, CMat w, const float* bias, bool relu, Mat out) {
  gemm(Trans::kNo, Trans::kNo, 1.0f, x, w, 0.0f, out);
  if (relu)
    bias_relu_forward(out, bias);
  else
    bias_forward(out, bias);
}

void Backend::run_side_by_side(const std::function<void()>& first,
                               const std::function<void()>& second) {
  if (!gemm_spans_) {
    run_side_by_side_impl(first, second);
    return;
  }
  // Timed: the pair is one span (spans from two threads would interleave).
  std::vector<GemmSpan>* spans = gemm_spans_;
  const uint64_t from = record_timestamp();
  gemm_spans_ = nullptr;
  try {
    run_side_by_side_impl(first, second);
  } catch (...) {
    gemm_spans_ = spans;
    throw;
  }
  gemm_spans_ = spans;
  spans->push_back({from, record_timestamp()});
}

void Backend::run_side_by_side_impl(const std::function<void()>& first,
                                    const std::function<void()>& second) {
  first();
  second();
}

void Backend::run_beside_pieces(const std::function<void()>& work, int count,
                                const std::function<void(int)>& piece) {
  if (count < 0) fail("run_beside_pieces", fmt::format("{} pieces", count));
  // Pieces run on two threads at once: their timestamps would interleave.
  if (gemm_spans_) fail("run_beside_pieces", "not while GEMM spans are recorded");
  run_beside_pieces_impl(work, count, piece);
}

void Backend::run_beside_pieces_impl(const std::function<void()>& work, int count,
                                     const std::function<void(int)>& piece) {
  work();
  for (int i = 0; i < count; ++i) piece(i);
}

void Backend::select_lane(int lane) {
  if (lane < 0 || lane >= kLanes)
    fail("select_lane", fmt::format("lane {} outside 0..{}", lane, kLanes - 1));
  lane_ = lane;
  select_lane_impl(lane);
}

}  // namespace mlp
