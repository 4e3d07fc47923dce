// CpuBackend: the Backend seam on the host. Everything is synchronous, so
// events and fences are plain counters and a "graph" is the step function
// itself. Threads: one ThreadPool of `threads` splits every op, sgemm
// included (a forward GEMM's blocks each carry their bias and ReLU,
// gemm_bias_act_impl), except a layer's dW and dX, which run side by side,
// one whole GEMM per core (run_side_by_side_impl), and layer 0's dW, whose
// row blocks both cores claim (run_beside_pieces_impl); OpenBLAS and oneDNN
// are held to one thread per call (see cpu/cpu_gemm.cpp and
// cpu/thread_pool.h).
// Subnormals: every op below that computes runs under a DenormalMode (the
// caller's thread, for the op's duration) and the pool's workers hold the same
// mode for good (cpu/denormals.h).
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/cpu_ops.h"
#include "cpu/cpu_step_ops.h"
#include "cpu/denormals.h"
#include "cpu/thread_pool.h"
#include "cpu/vector_width.h"
#include "mlp/backend.h"
#include "mlp/error.h"

namespace mlp {
namespace {

using cpu::ThreadPool;

void free_host(void* p) noexcept { std::free(p); }

class CpuGraph final : public Graph {
 public:
  explicit CpuGraph(std::function<void()> f) : step(std::move(f)) {}
  std::function<void()> step;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuOptions& opt)
      : flush_denormals_(cpu_flushes_denormals(opt)),
        pool_(resolve_cpu_threads(opt.threads), flush_denormals_),
        gemm_(resolve_cpu_gemm(opt.gemm)) {
    openblas_set_num_threads(1);
  }

  BackendKind kind() const override { return BackendKind::kCpu; }
  std::string describe() const override {
    std::string config = openblas_get_config();
    while (!config.empty() && config.back() == ' ') config.pop_back();
    const std::string gemm = gemm_ == CpuGemm::kOnednn
                                 ? fmt::format("oneDNN {} sgemm", cpu::onednn_version())
                                 : "OpenBLAS sgemm";
    return fmt::format("cpu: {}; {} (core {}), {} thread{}, {} loops, subnormals {}", gemm, config,
                       openblas_get_corename(), pool_.size(), pool_.size() == 1 ? "" : "s",
                       cpu_vector_width(), flush_denormals_ ? "flushed to zero" : "kept");
  }

 protected:
  void* alloc_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override {
    const std::size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc wants a multiple
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw Error(ExitCode::kFailure, fmt::format("out of host memory ({} bytes)", bytes));
    std::memset(p, 0, rounded);
    *free_fn = free_host;
    return p;
  }
  void* alloc_host_impl(std::size_t bytes, Buffer::FreeFn* free_fn) override {
    return alloc_impl(bytes, free_fn);
  }
  void upload_impl(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void download_impl(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void synchronize_impl() override {}
  uint64_t record_compute_event_impl() override { return ++events_; }
  uint64_t upload_async_impl(void* dst, const void* src, std::size_t bytes, uint64_t) override {
    std::memcpy(dst, src, bytes);
    return ++events_;
  }
  void wait_fence_impl(uint64_t) override {}
  // Ops are synchronous on the CPU: the bytes are there before this returns.
  uint64_t download_async_impl(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return ++events_;
  }
  bool download_ready_impl(uint64_t) override { return true; }
  uint64_t record_timestamp_impl() override {
    const uint64_t id = ++timestamps_recorded_;
    timestamps_[id % kTimestampRing] = std::chrono::steady_clock::now();
    return id;
  }
  double elapsed_ms_impl(uint64_t from, uint64_t to) override {
    return std::chrono::duration<double, std::milli>(timestamps_[to % kTimestampRing] -
                                                     timestamps_[from % kTimestampRing])
        .count();
  }
  std::unique_ptr<Graph> capture_impl(const std::function<void()>& step) override {
    return std::make_unique<CpuGraph>(step);
  }
  void replay_impl(Graph& g) override {
    const auto subnormals = mode();
    static_cast<CpuGraph&>(g).step();
  }

  void gemm_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) override {
    const auto subnormals = mode();
    cpu::gemm(pool_, gemm_, ta, tb, alpha, a, b, beta, c);
  }
  std::vector<int64_t> gemm_row_blocks_impl(Trans ta, Trans, CMat a, CMat, Mat c) const override {
    const cpu::GemmSplit split =
        cpu::gemm_split(c.rows, c.cols, ta == Trans::kNo ? a.cols : a.rows);
    if (split.by_columns) return {0, c.rows};
    return {split.bounds.begin(), split.bounds.begin() + split.blocks + 1};
  }
  void gemm_rows_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                      int64_t row_begin, int64_t row_end) override {
    const auto subnormals = mode();
    // Only a block of gemm()'s own split has gemm()'s bits: refuse any other.
    // (Called once per piece in the step: gemm_split allocates nothing.)
    const cpu::GemmSplit split =
        cpu::gemm_split(c.rows, c.cols, ta == Trans::kNo ? a.cols : a.rows);
    const bool by_rows = !split.by_columns && split.blocks > 1;
    const auto end = split.bounds.begin() + split.blocks + 1;
    const auto at = std::find(split.bounds.begin(), end, row_begin);
    const bool a_block =
        by_rows ? at + 1 < end && at[1] == row_end : row_begin == 0 && row_end == c.rows;
    if (!a_block)
      throw Error(ExitCode::kFailure,
                  fmt::format("backend op gemm_rows: rows [{}, {}) are not a block of this "
                              "GEMM's split ({} blocks of {} rows)",
                              row_begin, row_end, by_rows ? split.blocks : 1, c.rows));
    if (by_rows)
      cpu::gemm_rows(gemm_, ta, tb, alpha, a, b, beta, c, row_begin, row_end);
    else  // one block of rows (maybe blocks of columns): gemm() itself
      cpu::gemm(pool_, gemm_, ta, tb, alpha, a, b, beta, c);
  }
  void u8_to_float_impl(const uint8_t* in, Mat out, bool binarize) override {
    const auto subnormals = mode();
    cpu::u8_to_float(pool_, in, out, binarize);
  }
  void bias_relu_forward_impl(Mat z, const float* bias) override {
    const auto subnormals = mode();
    cpu::bias_relu_forward(pool_, z, bias);
  }
  void bias_forward_impl(Mat z, const float* bias) override {
    const auto subnormals = mode();
    cpu::bias_forward(z, bias);
  }
  void relu_backward_impl(Mat grad, CMat act) override {
    const auto subnormals = mode();
    cpu::relu_backward(pool_, grad, act);
  }
  void bias_grad_impl(CMat grad, float* db) override {
    const auto subnormals = mode();
    cpu::bias_grad(grad, db);
  }
  void softmax_xent_impl(CMat logits, const uint8_t* labels, float* dlogits,
                         double* metrics) override {
    const auto subnormals = mode();
    cpu::softmax_xent(logits, labels, dlogits, metrics);
  }
  void adam_step_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                      OptimizerState* state) override {
    const auto subnormals = mode();
    cpu::adam_step(pool_, params, grads, m, v, n, state);
  }
  // One piece of work per core, every GEMM in it whole (cpu::WholeGemms): a
  // layer's dW and dX as two whole single-threaded oneDNN calls side by side
  // ran at 229 GFLOP/s against 190-217 for each split in blocks over both
  // cores, and the step 8% faster (median of 10 alternating bench runs; 2-core
  // Xeon VM, 2026-12-02): no block repacks the operands. Whole at every thread
  // count, so the bits never depend on it; a pool of one runs them in order.
  bool prefers_side_by_side() const override { return true; }
  void run_side_by_side_impl(const std::function<void()>& first,
                             const std::function<void()>& second) override {
    const auto subnormals = mode();
    pool_.run(2, [&](int i) {
      const cpu::WholeGemms whole;
      (i == 0 ? first : second)();
    });
  }
  // Every thread of the pool claims pieces; one runs work() first. Pieces are
  // claimed, not assigned, so whichever thread is free takes the next one (a
  // pool of one: all the pieces, then work()); which thread runs a piece never
  // changes its bits.
  void run_beside_pieces_impl(const std::function<void()>& work, int count,
                              const std::function<void(int)>& piece) override {
    const auto subnormals = mode();
    std::atomic<int> next{0};
    pool_.run(std::max(2, pool_.size()), [&](int t) {
      if (t == 1) work();
      for (int i = next.fetch_add(1); i < count; i = next.fetch_add(1)) piece(i);
    });
  }
  // The step plan's fused ops (src/cpu/cpu_step_ops.cpp, cpu_ops.h).
  bool fuses_gemm_epilogue() const override { return true; }
  void gemm_bias_act_impl(CMat x, CMat w, const float* bias, bool relu, Mat out) override {
    const auto subnormals = mode();
    cpu::gemm_bias_act(pool_, gemm_, x, w, bias, relu, out);
  }
  void relu_backward_bias_grad_impl(Mat grad, CMat act, float* db) override {
    const auto subnormals = mode();
    cpu::relu_backward_bias_grad(pool_, grad, act, db);
  }
  void softmax_xent_backward_impl(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                                  double* metrics, OptimizerState* step_counter) override {
    const auto subnormals = mode();
    cpu::softmax_xent_backward(logits, labels, dlogits, db, metrics, step_counter);
  }
  void adam_update_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                        const OptimizerState* state) override {
    const auto subnormals = mode();
    cpu::adam_update(pool_, params, grads, m, v, n, state);
  }

 private:
  // The caller's mode while one op runs (the workers hold it for good).
  cpu::DenormalMode mode() const { return cpu::DenormalMode(flush_denormals_); }

  bool flush_denormals_;
  ThreadPool pool_;
  CpuGemm gemm_;
  uint64_t events_ = 0;
  uint64_t timestamps_recorded_ = 0;
  std::chrono::steady_clock::time_point timestamps_[kTimestampRing];
};

}  // namespace

bool cpu_flushes_denormals(const CpuOptions& opt) {
  return opt.flush_denormals && cpu::can_flush_denormals();
}

const char* cpu_vector_width() { return cpu::vector_width_name(cpu::active_vector_width()); }

std::unique_ptr<Backend> make_cpu_backend(const CpuOptions& opt) {
  return std::make_unique<CpuBackend>(opt);
}

}  // namespace mlp
