// The CPU GEMM routes: oneDNN's dnnl_sgemm (the default where built) or
// OpenBLAS's cblas_sgemm, both row-major. One threading runtime is in charge:
// the ThreadPool splits c into disjoint blocks of whole rows or columns and
// each task runs a full-depth, single-threaded sgemm on its block. oneDNN in
// Debian's build runs on OpenMP, so every thread that calls it first caps its
// own OpenMP team at 1 (omp_set_num_threads is per thread); OpenBLAS is held
// to one thread by the backend. Why not let oneDNN's OpenMP own the cores
// during a GEMM: libgomp's workers spin in their barrier between GEMMs against
// the pool's, and with a busy neighbour an OpenMP barrier waits for a
// descheduled thread (measured: 5-150 GFLOP/s on a loaded 2-core VM, against
// a steady single-thread rate); a fixed split also keeps the result of every
// element independent of the thread count (tested).
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "cpu/cpu_ops.h"
#include "mlp/error.h"

#ifdef MLP_WITH_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

#include <csignal>
#endif

namespace mlp {

bool onednn_compiled() {
#ifdef MLP_WITH_ONEDNN
  return true;
#else
  return false;
#endif
}

CpuGemm parse_cpu_gemm(const std::string& s) {
  if (s == "default") return CpuGemm::kDefault;
  if (s == "openblas") return CpuGemm::kOpenblas;
  if (s == "onednn") {
    if (!onednn_compiled())
      throw usage_error(
          "--cpu-gemm onednn: this mnist-mlp was built without oneDNN (install libdnnl-dev and "
          "reconfigure), use --cpu-gemm openblas");
    return CpuGemm::kOnednn;
  }
  throw usage_error(
      fmt::format("--cpu-gemm: unknown library '{}' (expected onednn or openblas)", s));
}

CpuGemm resolve_cpu_gemm(CpuGemm g) {
  if (g != CpuGemm::kDefault) return g;
  return onednn_compiled() ? CpuGemm::kOnednn : CpuGemm::kOpenblas;
}

const char* cpu_gemm_name(CpuGemm g) {
  return resolve_cpu_gemm(g) == CpuGemm::kOnednn ? "onednn" : "openblas";
}

namespace cpu {
namespace {

#ifdef MLP_WITH_ONEDNN
// oneDNN sizes its OpenMP team from the calling thread's omp_get_max_threads();
// capping it once per thread keeps oneDNN from starting threads of its own.
void hold_onednn_to_this_thread() {
  thread_local bool capped = false;
  if (!capped) {
    omp_set_num_threads(1);
    capped = true;
  }
}
#endif

#ifdef MLP_WITH_ONEDNN
// oneDNN 2.6's JIT sgemm kernels point rsp into a heap workspace while they run
// (oneDNN issue #4845, fixed in 3.x): a signal handled on that thread then
// writes its frame over the heap, and a later free() aborts. So no signal is
// handled on a thread inside oneDNN: the pool's workers block every signal for
// good (thread_pool.cpp), and the calling thread blocks them for one gemm() or
// gemm_rows(); one pending is delivered when it returns. Two syscalls per
// GEMM, ~1 us.
class SignalsBlocked {
 public:
  SignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

 private:
  sigset_t old_;
};
#endif

// Signals blocked while it lives when `lib` is oneDNN; nothing otherwise.
class SignalsBlockedFor {
 public:
  explicit SignalsBlockedFor([[maybe_unused]] CpuGemm lib) {
#ifdef MLP_WITH_ONEDNN
    if (lib == CpuGemm::kOnednn) on_.emplace();
#endif
  }

 private:
#ifdef MLP_WITH_ONEDNN
  std::optional<SignalsBlocked> on_;
#endif
};

// One sgemm on a block of c: rows [r0, r1) and columns [c0, c1) of the result.
void gemm_block(CpuGemm lib, Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
                int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t k = ta == Trans::kNo ? a.cols : a.rows;
  // Row r of op(a) starts at a + r*lda untransposed, at a + r transposed; likewise columns of
  // op(b).
  const float* ab = a.data + (ta == Trans::kNo ? r0 * a.cols : r0);
  const float* bb = b.data + (tb == Trans::kNo ? c0 : c0 * b.cols);
  float* cb = c.data + r0 * c.cols + c0;
#ifdef MLP_WITH_ONEDNN
  if (lib == CpuGemm::kOnednn) {
    hold_onednn_to_this_thread();
    const dnnl_status_t st =
        dnnl_sgemm(ta == Trans::kNo ? 'N' : 'T', tb == Trans::kNo ? 'N' : 'T', r1 - r0, c1 - c0, k,
                   alpha, ab, a.cols, bb, b.cols, beta, cb, c.cols);
    if (st != dnnl_success)
      throw Error(ExitCode::kFailure,
                  fmt::format("dnnl_sgemm failed with status {}", static_cast<int>(st)));
    return;
  }
#else
  (void)lib;
#endif
  cblas_sgemm(CblasRowMajor, ta == Trans::kNo ? CblasNoTrans : CblasTrans,
              tb == Trans::kNo ? CblasNoTrans : CblasTrans, static_cast<int>(r1 - r0),
              static_cast<int>(c1 - c0), static_cast<int>(k), alpha, ab, static_cast<int>(a.cols),
              bb, static_cast<int>(b.cols), beta, cb, static_cast<int>(c.cols));
}

thread_local bool t_whole_gemms = false;

// Calls block(r0, r1, c0, c1) for each block of gemm_split(m, n, k), one pool
// task per block; the whole (m, n) on the calling thread when it does not
// split or inside WholeGemms.
template <class F>
void for_each_block(ThreadPool& pool, int64_t m, int64_t n, int64_t k, const F& block) {
  const GemmSplit split = gemm_split(m, n, k);
  if (split.blocks <= 1 || t_whole_gemms) {
    block(int64_t{0}, m, int64_t{0}, n);
    return;
  }
  pool.run(split.blocks, [&](int i) {
    const int64_t b0 = split.bounds[i], b1 = split.bounds[i + 1];
    if (split.by_columns)
      block(int64_t{0}, m, b0, b1);
    else
      block(b0, b1, int64_t{0}, n);
  });
}

}  // namespace

WholeGemms::WholeGemms() : on_(t_whole_gemms) {}

std::string onednn_version() {
#ifdef MLP_WITH_ONEDNN
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("{}.{}.{}", v->major, v->minor, v->patch);
#else
  return "";
#endif
}

GemmSplit gemm_split(int64_t m, int64_t n, int64_t k) {
  // c: (m, n), depth k, split into blocks of whole rows of c (or, below 2 x
  // kMinGemmRows rows, of columns), each a full-depth sgemm on its own part of
  // c (no reduction). The blocks depend on the shape alone, never on the pool
  // size: both libraries can give an element different bits for different
  // block widths (seen on an AVX2 EPYC; on the AVX-512 Xeon of 2026-12-02 they
  // did not), so a split by thread count could make results depend on
  // --threads. Each block packs its operands anew, so few, wide blocks pay: at
  // batch 100 the forward GEMMs in 2 blocks of rows took 0.93-1.16 ms a step
  // against 1.10-1.28 for 4 or 8 blocks of columns (bench --kernels, 3
  // alternating rounds, 2-core Xeon VM). Up to kGemmBlocks blocks (batch 1024:
  // 16 of 64 rows) serve more cores; layer 0's dW (784 rows) in 16 blocks ran
  // as fast as whole on one core (344.9 us both, AMD EPYC Zen 5). Blocks of
  // rows start at multiples of 4, so batch 100 splits 52/48: at multiples of 8
  // it was 56/44 and one core waited, 284 us against 270 for layer 0's forward
  // GEMM and 186 against 177 for a 500x500 one (2 threads, the weights cold,
  // median of 200 alternating rounds; 2-core Intel Xeon VM, 2026-12-03).
  GemmSplit s;
  s.by_columns = m < 2 * kMinGemmRows;
  const int64_t dim = s.by_columns ? n : m, align = s.by_columns ? 16 : 4;
  const int64_t most = s.by_columns ? kGemmColumnBlocks : m / kMinGemmRows;
  const int64_t blocks = std::clamp<int64_t>(2 * m * n * k / kMinGemmFlopsPerTask, 1,
                                             std::min<int64_t>({kGemmBlocks, most, dim / align}));
  for (int64_t i = 1; i <= blocks; ++i) {
    const int64_t b =
        i == blocks ? dim : std::min(dim, (dim * i / blocks + align - 1) / align * align);
    if (b > s.bounds[s.blocks]) s.bounds[++s.blocks] = b;  // an empty block is dropped
  }
  return s;
}

void gemm(ThreadPool& pool, CpuGemm lib, Trans ta, Trans tb, float alpha, CMat a, CMat b,
          float beta, Mat c) {
  lib = resolve_cpu_gemm(lib);
  const SignalsBlockedFor no_signals(lib);
  // A layer's dW and dX are not split at all: they run side by side, one
  // whole GEMM per core (WholeGemms, CpuBackend::run_side_by_side_impl).
  const int64_t k = ta == Trans::kNo ? a.cols : a.rows;
  for_each_block(pool, c.rows, c.cols, k, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    gemm_block(lib, ta, tb, alpha, a, b, beta, c, r0, r1, c0, c1);
  });
}

void gemm_bias_act(ThreadPool& pool, CpuGemm lib, CMat x, CMat w, const float* bias, bool relu,
                   Mat out) {
  lib = resolve_cpu_gemm(lib);
  const SignalsBlockedFor no_signals(lib);
  for_each_block(pool, out.rows, out.cols, x.cols,
                 [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
                   gemm_block(lib, Trans::kNo, Trans::kNo, 1.0f, x, w, 0.0f, out, r0, r1, c0, c1);
                   bias_act_block(out, bias, relu, r0, r1, c0, c1);
                 });
}

void gemm_rows(CpuGemm lib, Trans ta, Trans tb, float alpha, CMat a, CMat b, float beta, Mat c,
               int64_t row_begin, int64_t row_end) {
  lib = resolve_cpu_gemm(lib);
  const SignalsBlockedFor no_signals(lib);
  gemm_block(lib, ta, tb, alpha, a, b, beta, c, row_begin, row_end, 0, c.cols);
}

}  // namespace cpu
}  // namespace mlp
