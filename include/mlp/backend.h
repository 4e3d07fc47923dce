// Backend: the op set the model is written against, with one CPU and one CUDA
// implementation. Public methods are non-virtual: they check shapes once, then
// call the protected virtual *_impl. Pointers passed to ops are backend memory
// (from alloc()); matrices are row-major and contiguous.
//
// Ordering: every op and replay runs in issue order on the backend's compute
// stream; on the CPU that simply means "now". Only download(), synchronize(),
// wait_fence() and elapsed_ms() block the host (download_async() never does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlp/buffer.h"
#include "mlp/optimizer.h"

namespace mlp {

// Row-major views. CMat converts implicitly from Mat.
struct Mat {
  float* data;
  int64_t rows;
  int64_t cols;
  int64_t size() const { return rows * cols; }
};
struct CMat {
  const float* data;
  int64_t rows;
  int64_t cols;
  CMat(const float* d, int64_t r, int64_t c) : data(d), rows(r), cols(c) {}
  CMat(Mat m) : data(m.data), rows(m.rows), cols(m.cols) {}  // NOLINT: implicit on purpose
  int64_t size() const { return rows * cols; }
};

enum class Trans { kNo, kYes };
enum class BackendKind { kCpu, kCuda };
// "cpu" | "cuda": the device column of bench rows and the JSON `device` field.
inline const char* backend_kind_name(BackendKind k) {
  return k == BackendKind::kCuda ? "cuda" : "cpu";
}

// metrics points at two doubles in backend memory: {loss_sum, correct_count}.
inline constexpr int kMetricLossSum = 0;
inline constexpr int kMetricCorrect = 1;
inline constexpr int kMetricCount = 2;

// Two timestamps around one GEMM (see Backend::set_gemm_spans).
struct GemmSpan {
  uint64_t from, to;
};

// A recorded step, replayed without re-issuing its ops (a CUDA Graph on CUDA).
class Graph {
 public:
  virtual ~Graph() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  // One line for the run header, e.g. "cpu: OpenBLAS 0.3.21 (Haswell), 2 threads".
  virtual std::string describe() const = 0;

  // ---- memory -------------------------------------------------------------
  Buffer alloc(std::size_t bytes);       // backend memory, zero-filled
  Buffer alloc_host(std::size_t bytes);  // host staging memory (pinned on CUDA)
  void upload(void* dst, const void* src, std::size_t bytes);    // blocking
  void download(void* dst, const void* src, std::size_t bytes);  // waits for queued work
  void synchronize() { synchronize_impl(); }

  // ---- streaming ----------------------------------------------------------
  // Marks the compute stream's current position; returns its id.
  uint64_t record_compute_event() { return record_compute_event_impl(); }
  // Queues a copy from host staging memory into backend memory. The copy waits
  // for compute event `after` (0: none) so it cannot overwrite data a queued
  // step still reads, and later compute waits for the copy. Returns a fence:
  // wait_fence(fence) blocks until `src` may be reused. Thread-safe with respect
  // to wait_fence() called from a loader thread.
  uint64_t upload_async(void* dst, const void* src, std::size_t bytes, uint64_t after);
  void wait_fence(uint64_t fence) { wait_fence_impl(fence); }
  // Queues a copy from backend memory into host staging memory `dst` (from
  // alloc_host: pinned on CUDA) after all compute issued so far, and returns at
  // once with an id; download_ready(id) says, without blocking, whether the
  // bytes have landed. This is how the trainer reads running metrics without
  // stalling the pipeline. Ids stay valid for the last kDownloadRing downloads.
  static constexpr uint64_t kDownloadRing = 64;
  uint64_t download_async(void* dst, const void* src, std::size_t bytes);
  bool download_ready(uint64_t id) { return download_ready_impl(id); }

  // ---- graphs -------------------------------------------------------------
  // Records the ops `step` issues so replay() can issue them again cheaply.
  // The step must use fixed pointers and never block the host.
  std::unique_ptr<Graph> capture(const std::function<void()>& step) { return capture_impl(step); }
  void replay(Graph& g) { replay_impl(g); }

  // ---- timing -------------------------------------------------------------
  // Records a timestamp in issue order (a CUDA event on the compute stream; the
  // steady clock on the CPU, where ops are synchronous) and returns its id.
  // Ids stay valid for the last kTimestampRing recordings.
  static constexpr uint64_t kTimestampRing = 1024;
  uint64_t record_timestamp() { return record_timestamp_impl(); }
  // Milliseconds from timestamp `from` to `to`; blocks until both happened.
  double elapsed_ms(uint64_t from, uint64_t to) { return elapsed_ms_impl(from, to); }
  // While set, gemm() records a timestamp before and after every GEMM and
  // appends the pair to *spans: the bench splits a step into GEMMs and the rest
  // this way. nullptr (the default) turns it off; never set it while capturing.
  void set_gemm_spans(std::vector<GemmSpan>* spans) { gemm_spans_ = spans; }

  // ---- profiling ----------------------------------------------------------
  virtual void push_range(const char* /*name*/) {}  // NVTX range on CUDA
  virtual void pop_range() {}
  virtual void profiler_start() {}
  virtual void profiler_stop() {}

  // ---- ops ----------------------------------------------------------------
  // c = alpha * op(a) * op(b) + beta * c
  void gemm(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c);
  // The blocks of whole rows gemm() computes c in, each one library call of
  // its own: row bounds {0, r1, ..., c.rows}. One block, {0, c.rows}, where the
  // backend does not split by rows (CUDA: cuBLAS takes the GEMM whole).
  std::vector<int64_t> gemm_row_blocks(Trans ta, Trans tb, CMat a, CMat b, Mat c) const;
  // Rows [row_begin, row_end) of gemm(ta, tb, alpha, a, b, beta, c), for one
  // block of gemm_row_blocks(), with the bits gemm() gives them (outside
  // run_side_by_side, where the CPU takes every GEMM whole): a GEMM in pieces
  // that any thread may compute (run_beside_pieces). Any other range fails.
  void gemm_rows(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                 int64_t row_begin, int64_t row_end);
  // out = in / 255, or (in > 127 ? 1 : 0) when binarize; in: (rows, cols) uint8
  void u8_to_float(const uint8_t* in, Mat out, bool binarize);
  // z = max(z + bias, 0), bias broadcast over rows; bias: (z.cols)
  void bias_relu_forward(Mat z, const float* bias);
  // z = z + bias
  void bias_forward(Mat z, const float* bias);
  // grad = grad * (act > 0); act is the ReLU output
  void relu_backward(Mat grad, CMat act);
  // db = column sums of grad; db: (grad.cols)
  void bias_grad(CMat grad, float* db);
  // Row-wise softmax cross-entropy against labels (rows). Adds the summed loss
  // and the number of rows whose argmax equals the label to metrics; when
  // dlogits is non-null writes d(mean loss)/d(logits) = (softmax - onehot) / rows
  // (not in place: dlogits must not overlap logits).
  void softmax_xent(CMat logits, const uint8_t* labels, float* dlogits, double* metrics);
  // state->step += 1; then Adam with bias correction at t = state->step over n
  // floats, with the hyperparameters and learning-rate schedule in *state. The
  // state lives in backend memory, read at run time, so a captured graph sees
  // the step advance and the schedule move (see mlp/optimizer.h).
  void adam_step(float* params, const float* grads, float* m, float* v, int64_t n,
                 OptimizerState* state);

  // ---- step-plan ops (src/step_plan.h): fewer, fused nodes per step ----------
  // relu_backward then bias_grad in one pass over grad: grad = grad * (act > 0),
  // db = column sums of the masked grad. db: (grad.cols)
  void relu_backward_bias_grad(Mat grad, CMat act, float* db);
  // softmax_xent writing dlogits, plus db = column sums of dlogits (the output
  // layer's bias gradient) and, when step_counter is non-null,
  // step_counter->step += 1: Adam's counter advances here, in a kernel the step
  // runs anyway, once per step and before any adam_update of that step reads it.
  void softmax_xent_backward(CMat logits, const uint8_t* labels, Mat dlogits, float* db,
                             double* metrics, OptimizerState* step_counter);
  // Adam over n floats at t = state->step (as adam_step after its increment),
  // without touching the counter: one launch, callable once per layer.
  void adam_update(float* params, const float* grads, float* m, float* v, int64_t n,
                   const OptimizerState* state);
  // out = x * w + bias, then ReLU when relu: a layer's forward in one op. True
  // when the backend does it in one launch (CUDA with --gemm lt, where
  // cuBLASLt has the epilogue); the step plan then makes it one node instead of
  // a GEMM node and a bias node.
  virtual bool fuses_gemm_epilogue() const { return false; }
  void gemm_bias_act(CMat x, CMat w, const float* bias, bool relu, Mat out);

  // ---- independent work side by side -----------------------------------------
  // Runs first() and second(), two pieces of work that share no output and
  // neither reads what the other writes: at once where the backend can. The
  // CPU runs each on a core of its own, every GEMM inside it whole (never split
  // into blocks), and does so whether or not the two overlap, so the bits never
  // depend on the thread count. The default (CUDA) runs them one after the
  // other on the selected lane. Not for work that records timestamps: while
  // set_gemm_spans is on, the whole call is recorded as one GEMM span (the
  // eager backward's dW and dX).
  void run_side_by_side(const std::function<void()>& first, const std::function<void()>& second);
  // True when StepPlan::run should follow StepPlan::side_by_side_schedule()
  // (independent GEMMs through run_side_by_side, pieces through
  // run_beside_pieces) instead of lanes: the CPU, at every thread count, so
  // that those GEMMs are whole on one thread as well as on many.
  virtual bool prefers_side_by_side() const { return false; }
  // Runs work() while pieces 0..count-1 (piece(i)) are claimed one at a time:
  // on the CPU by one core from the start and by the core that ran work() as
  // soon as work() returns, so a GEMM in row blocks (and Adam over each
  // block's rows) fills the time work() leaves free. Pieces must be
  // independent of each other and of work(); each piece's GEMMs are whole on
  // its thread (gemm_rows). The default (CUDA) runs work(), then every piece in
  // order. Not while set_gemm_spans is on (that fails).
  void run_beside_pieces(const std::function<void()>& work, int count,
                         const std::function<void(int)>& piece);

  // ---- lanes: fork/join inside a step ---------------------------------------
  // Ops issue on lane 0 (the compute stream) unless select_lane(1) picked the
  // side lane: a second stream on CUDA (its own cuBLAS handle), recorded into
  // the same graph when capturing; nothing on the CPU, where ops run at once.
  // A lane sees the other's work only through record/wait: fork the side lane
  // from lane 0 before its first op and join it back before the step ends.
  static constexpr int kLanes = 2;
  void select_lane(int lane);
  int lane() const { return lane_; }
  // Marks the selected lane's position; returns its id.
  uint64_t record_lane_event() { return record_lane_event_impl(); }
  // The selected lane waits for an id from record_lane_event (any lane).
  void wait_lane_event(uint64_t id) { wait_lane_event_impl(id); }

 protected:
  virtual void* alloc_impl(std::size_t bytes, Buffer::FreeFn* free_fn) = 0;
  virtual void* alloc_host_impl(std::size_t bytes, Buffer::FreeFn* free_fn) = 0;
  virtual void upload_impl(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void download_impl(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void synchronize_impl() = 0;
  virtual uint64_t record_compute_event_impl() = 0;
  virtual uint64_t upload_async_impl(void* dst, const void* src, std::size_t bytes,
                                     uint64_t after) = 0;
  virtual void wait_fence_impl(uint64_t fence) = 0;
  virtual uint64_t download_async_impl(void* dst, const void* src, std::size_t bytes) = 0;
  virtual bool download_ready_impl(uint64_t id) = 0;
  virtual uint64_t record_timestamp_impl() = 0;
  virtual double elapsed_ms_impl(uint64_t from, uint64_t to) = 0;
  virtual std::unique_ptr<Graph> capture_impl(const std::function<void()>& step) = 0;
  virtual void replay_impl(Graph& g) = 0;

  virtual void gemm_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c) = 0;
  virtual void u8_to_float_impl(const uint8_t* in, Mat out, bool binarize) = 0;
  virtual void bias_relu_forward_impl(Mat z, const float* bias) = 0;
  virtual void bias_forward_impl(Mat z, const float* bias) = 0;
  virtual void relu_backward_impl(Mat grad, CMat act) = 0;
  virtual void bias_grad_impl(CMat grad, float* db) = 0;
  virtual void softmax_xent_impl(CMat logits, const uint8_t* labels, float* dlogits,
                                 double* metrics) = 0;
  virtual void adam_step_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                              OptimizerState* state) = 0;
  virtual void relu_backward_bias_grad_impl(Mat grad, CMat act, float* db) = 0;
  virtual void softmax_xent_backward_impl(CMat logits, const uint8_t* labels, Mat dlogits,
                                          float* db, double* metrics,
                                          OptimizerState* step_counter) = 0;
  virtual void adam_update_impl(float* params, const float* grads, float* m, float* v, int64_t n,
                                const OptimizerState* state) = 0;
  // Default: the GEMM, then the bias (+ ReLU) op: what the CPU reference does.
  virtual void gemm_bias_act_impl(CMat x, CMat w, const float* bias, bool relu, Mat out);
  virtual void run_side_by_side_impl(const std::function<void()>& first,
                                     const std::function<void()>& second);
  virtual std::vector<int64_t> gemm_row_blocks_impl(Trans ta, Trans tb, CMat a, CMat b,
                                                    Mat c) const;
  virtual void gemm_rows_impl(Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                              int64_t row_begin, int64_t row_end);
  virtual void run_beside_pieces_impl(const std::function<void()>& work, int count,
                                      const std::function<void(int)>& piece);

  virtual void select_lane_impl(int /*lane*/) {}
  virtual uint64_t record_lane_event_impl() { return ++lane_events_; }
  virtual void wait_lane_event_impl(uint64_t /*id*/) {}

 private:
  std::vector<GemmSpan>* gemm_spans_ = nullptr;
  int lane_ = 0;
  uint64_t lane_events_ = 0;
};

// RAII profiling range (NVTX on CUDA, nothing on the CPU).
class ScopedRange {
 public:
  ScopedRange(Backend& b, const char* name) : b_(b) { b_.push_range(name); }
  ~ScopedRange() { b_.pop_range(); }
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  Backend& b_;
};

// The library behind the CPU GEMMs (--cpu-gemm). kDefault: oneDNN when this
// build has it (about twice OpenBLAS's speed on the step's shapes), else OpenBLAS.
enum class CpuGemm { kDefault, kOnednn, kOpenblas };
struct CpuOptions {
  int threads = 0;  // 0: all physical cores
  CpuGemm gemm = CpuGemm::kDefault;
  // Subnormal floats flushed to zero while the backend computes (x86 FTZ+DAZ;
  // why: src/cpu/denormals.h), or kept (IEEE gradual underflow).
  bool flush_denormals = true;
};
// Whether a CPU backend made with these options flushes subnormals: asked for,
// and settable on this architecture (x86 MXCSR).
bool cpu_flushes_denormals(const CpuOptions& opt);
// The vector width the CPU backend's elementwise and Adam loops run:
// "avx512", "avx2" or "baseline" (x86-64 SSE2, or any other CPU). The widest
// this CPU has; every width gives the same bits (src/cpu/vector_width.h).
const char* cpu_vector_width();
// The thread count a CpuOptions::threads value means on this machine (0: the
// physical cores this process may run on, hyperthreads not counted).
int resolve_cpu_threads(int requested);
// "onednn" | "openblas" | "default"; Error(kUsage) on anything else, and on
// "onednn" when this build has no oneDNN.
CpuGemm parse_cpu_gemm(const std::string& s);
CpuGemm resolve_cpu_gemm(CpuGemm g);   // kDefault -> what this build uses
const char* cpu_gemm_name(CpuGemm g);  // "onednn" | "openblas" (kDefault resolved)
bool onednn_compiled();
struct CudaOptions {
  int device = 0;
  bool tf32 = false;     // allow TF32 tensor-core math in cuBLAS (default strict FP32)
  bool gemm_lt = false;  // --gemm lt: forward GEMMs through cuBLASLt with the bias/ReLU epilogue
};

std::unique_ptr<Backend> make_cpu_backend(const CpuOptions& opt);
// Throws Error(kDevice) when built without CUDA or when no usable device exists.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opt);
bool cuda_compiled();
// Human-readable reason why CUDA can't be used, or "" when a device is usable.
std::string cuda_unavailable_reason();
// Multi-line report for `mnist-mlp info`: devices, compute capability, memory,
// compiled architectures, CUDA / cuBLAS / cuDNN versions, or why there are none.
std::string cuda_report();

// --device auto|cpu|cuda: auto picks CUDA when a device is usable, else the CPU.
enum class DeviceChoice { kAuto, kCpu, kCuda };
DeviceChoice parse_device(const std::string& s);  // Error(kUsage) on anything else
struct BackendOptions {
  DeviceChoice device = DeviceChoice::kAuto;
  CpuOptions cpu;
  CudaOptions cuda;
  bool quiet = false;  // auto: don't print the one line saying why it chose the CPU
};
std::unique_ptr<Backend> make_backend(const BackendOptions& opt);
// `bench --device all`: the CPU, then CUDA when a device is usable; otherwise
// *cuda_skipped says why not.
std::vector<std::unique_ptr<Backend>> make_all_backends(const BackendOptions& opt,
                                                        std::string* cuda_skipped);

}  // namespace mlp
