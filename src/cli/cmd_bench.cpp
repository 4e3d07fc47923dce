// mnist-mlp bench: trains the same network on every available backend for a
// fixed number of steps and reports throughput, projected epoch time, where a
// step's time goes (copy / forward / backward / update, GEMMs apart), achieved
// GFLOP/s against the machine's peak, and the GPU/CPU speed-up. The numbers
// come from run_bench (src/bench/run_bench.cpp); this file picks what to run and
// prints it, as tables or (--json) one JSON document on stdout.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/bench_engines.h"
#include "cli/commands.h"
#include "cli/device_flags.h"
#include "cli/engine_flag.h"
#include "mlp/backend.h"
#include "mlp/bench.h"
#include "mlp/dataset.h"
#include "mlp/error.h"
#include "mlp/kernel_timing.h"
#include "mlp/model.h"

namespace mlp::cli {
namespace {

struct BenchOptions {
  BenchConfig cfg;
  std::vector<int64_t> hidden{500, 500, 500};
  DeviceFlags device;  // --device all|cpu|cuda
  EngineFlag engine;   // --engine cublas|fused|all
  std::string data_dir = "data/mnist";
  bool synthetic = false;
  bool sweep = false;
  bool thread_sweep = false;  // CPU rows at 1..physical cores threads
  bool neighbour = false;     // the busy-neighbour figure (run_neighbour_bench)
  bool no_graph = false;
  bool json = false;
  bool kernels = false;  // --kernels: the per-kernel table instead of the throughput rows
};

const std::vector<int64_t> kSweepBatches{100, 256, 512, 1024, 2048, 4096};

struct Data {
  Dataset set;
  std::string what;  // one line for humans and JSON
  bool real = false;
};

Data load_data(const BenchOptions& o) {
  namespace fs = std::filesystem;
  const fs::path dir(o.data_dir);
  const bool present =
      fs::exists(dir / "train-images-idx3-ubyte") || fs::exists(dir / "train-images-idx3-ubyte.gz");
  Data d;
  if (!o.synthetic && present) {
    d.set = load_split(o.data_dir, Split::kTrain);
    d.what = fmt::format("MNIST training set ({}, {} samples)", d.set.images_path, d.set.count);
    d.real = true;
  } else {
    d.set = synthetic_dataset(o.cfg.seed);
    d.what = fmt::format("synthetic random bytes ({} x 28x28, seed {}){}", d.set.count, o.cfg.seed,
                         o.synthetic ? "" : fmt::format(": no MNIST in {}", o.data_dir));
  }
  return d;
}

nlohmann::json to_json(const BenchResult& r, double speedup) {
  nlohmann::json phases;
  for (int p = 0; p < kPhaseCount; ++p) phases[phase_name(p)] = r.phase_ms[p];
  phases["total"] = r.phase_total_ms;
  nlohmann::json j = {{"device", r.device},
                      {"backend", r.backend},
                      {"batch_size", r.batch},
                      {"steps", r.steps},
                      {"repeats", r.repeats},
                      {"samples_per_sec", r.samples_per_sec},
                      {"samples_per_sec_min", r.samples_per_sec_min},
                      {"samples_per_sec_max", r.samples_per_sec_max},
                      {"step_ms", r.step_ms},
                      {"epoch_seconds", r.epoch_seconds},
                      {"phases_ms", phases},
                      {"gemm_ms", r.gemm_ms},
                      {"gemm_share", r.gemm_share},
                      {"gflop_per_step", r.gflop_per_step},
                      {"gflops", r.gflops},
                      {"gemm_gflops", r.gemm_gflops},
                      {"peak_gflops", r.peak_gflops},
                      {"loss", r.loss}};
  j["peak_share"] = r.peak_gflops > 0 ? nlohmann::json(r.gflops / r.peak_gflops) : nullptr;
  j["forward_gemm_gflops"] = r.forward_gemm_gflops;
  j["backward_gemm_gflops"] = r.backward_gemm_gflops;
  const auto share = [&](double gf) {
    return r.peak_gflops > 0 ? nlohmann::json(gf / r.peak_gflops) : nlohmann::json(nullptr);
  };
  j["forward_gemm_peak_share"] = share(r.forward_gemm_gflops);
  j["backward_gemm_peak_share"] = share(r.backward_gemm_gflops);
  j["gemm_peak_share"] = share(r.gemm_gflops);
  if (r.device == "cpu") {
    j["threads"] = r.threads;
    j["cpu_gemm"] = r.cpu_gemm;
  }
  j["speedup_vs_cpu"] = speedup > 0 ? nlohmann::json(speedup) : nullptr;
  return j;
}

// The last column: "onednn 2t" for CPU rows (they differ by library and threads).
std::string row_config(const BenchResult& r) {
  return r.device == "cpu" && !r.cpu_gemm.empty() ? fmt::format("{} {}t", r.cpu_gemm, r.threads)
                                                  : "";
}

void print_tables(const std::vector<BenchResult>& rows, const std::vector<double>& speedups) {
  fmt::print("\n{:<6} {:>5} {:>11} {:>19} {:>8} {:>8} {:>8} {:>7} {:>8}  {}\n", "device", "batch",
             "samples/s", "(min..max)", "epoch s", "step ms", "GFLOP/s", "% peak", "vs cpu",
             "config");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BenchResult& r = rows[i];
    fmt::print("{:<6} {:>5} {:>11.0f} {:>19} {:>8.2f} {:>8.3f} {:>8.1f} {:>7} {:>8}  {}\n",
               r.device, r.batch, r.samples_per_sec,
               fmt::format("({:.0f}..{:.0f})", r.samples_per_sec_min, r.samples_per_sec_max),
               r.epoch_seconds, r.step_ms, r.gflops,
               r.peak_gflops > 0 ? fmt::format("{:.1f}%", 100 * r.gflops / r.peak_gflops) : "-",
               speedups[i] > 0 ? fmt::format("{:.2f}x", speedups[i]) : "-", row_config(r));
  }
  fmt::print("\nms per step, eager, every phase timed (sgemm: the GEMMs' share of the step)\n");
  fmt::print("{:<6} {:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>7} {:>10}  {}\n", "device",
             "batch", "copy", "fwd gemm", "fwd rest", "bwd gemm", "bwd rest", "update", "total",
             "sgemm", "GEMM GF/s", "config");
  for (const BenchResult& r : rows)
    fmt::print(
        "{:<6} {:>5} {:>7.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>7.3f} {:>8.3f} {:>6.1f}% "
        "{:>10.1f}  {}\n",
        r.device, r.batch, r.phase_ms[kPhaseCopy], r.phase_ms[kPhaseForwardGemm],
        r.phase_ms[kPhaseForwardOther], r.phase_ms[kPhaseBackwardGemm],
        r.phase_ms[kPhaseBackwardOther], r.phase_ms[kPhaseUpdate], r.phase_total_ms,
        100 * r.gemm_share, r.gemm_gflops, row_config(r));
}

// --kernels: every node of the step timed alone (src/bench/kernel_timing.cpp).
// The CPU peak measured again once the timed runs are done, *peak becoming
// the higher of the two (higher_cpu_peak: a measurement disturbed by another
// process reads low, and every share of it would read high); prints both.
// Returns the new measurement.
double measure_cpu_peak_again(PeakInfo* peak, int threads, std::FILE* out) {
  const double before = peak->gflops;
  const PeakInfo after = cpu_peak(threads);
  *peak = higher_cpu_peak(*peak, after);
  fmt::print(out,
             "peak   cpu: {:.1f} GFLOP/s measured again after the runs ({:.1f} before); the "
             "shares are of {:.1f}\n",
             after.gflops, before, peak->gflops);
  return after.gflops;
}

int run_kernels(const BenchOptions& o, std::vector<std::unique_ptr<Backend>>& backends,
                std::map<std::string, PeakInfo>& peaks, const std::vector<int64_t>& batches,
                const Dataset& data) {
  nlohmann::json out = nlohmann::json::array();
  for (int64_t b : batches)
    for (auto& be : backends) {
      BenchConfig c = o.cfg;
      c.batch = b;
      const std::string dev = backend_kind_name(be->kind());
      KernelReport r = time_kernels(*be, data, c, peaks[dev]);
      if (dev == "cpu" && peaks[dev].gflops > 0) {
        measure_cpu_peak_again(&peaks[dev], resolve_cpu_threads(o.device.threads),
                               o.json ? stderr : stdout);
        restate_gemm_peak(r, peaks[dev].gflops);
      }
      if (!o.json) {
        fmt::print("\n{}", format_kernel_report(r));
        continue;
      }
      nlohmann::json nodes = nlohmann::json::array();
      for (const KernelTiming& k : r.nodes)
        nodes.push_back({{"name", k.name},
                         {"lane", k.lane},
                         {"kind", k.kind == NodeKind::kGemm ? "gemm" : "kernel"},
                         {"us", k.us},
                         {k.kind == NodeKind::kGemm ? "gflops" : "gbps", k.achieved},
                         {"of_peak", k.of_peak},
                         {"critical", k.critical}});
      out.push_back({{"device", r.device},
                     {"backend", be->describe()},
                     {"batch_size", r.batch},
                     {"tf32", o.device.tf32},
                     {"nodes", nodes},
                     {"sum_us", r.sum_us},
                     {"critical_path_us", r.critical_path_us},
                     {"critical_path_nodes", r.critical_path_nodes},
                     {"step_us", r.step_us}});
      if (!r.groups.empty()) {
        nlohmann::json groups = nlohmann::json::array();
        for (const GroupTiming& g : r.groups)
          groups.push_back({{"name", g.name},
                            {"us", g.us},
                            {"gemm_gflops", g.gemm_gflops},
                            {"of_peak", g.of_peak}});
        out.back()["groups"] = groups;
        out.back()["groups_us"] = r.groups_us;
      }
    }
  if (o.json)
    fmt::print("{}\n", nlohmann::json{{"version", MLP_VERSION}, {"kernels", out}}.dump(2));
  return 0;
}

int run_bench_command(BenchOptions& o) {
  check_engine_flags(o.engine, o.device, o.no_graph);
  const int threads = resolve_cpu_threads(o.device.threads);
  const Data data = load_data(o);
  o.cfg.sizes = {data.set.pixels()};
  o.cfg.sizes.insert(o.cfg.sizes.end(), o.hidden.begin(), o.hidden.end());
  o.cfg.sizes.push_back(kClasses);
  o.cfg.use_graph = !o.no_graph;

  // The backend factory decides: --device all is the CPU plus CUDA when usable
  // (else a skip line says why); cpu or cuda is that one (cuda fails with the
  // reason when it is not usable).
  std::vector<std::unique_ptr<Backend>> backends;
  nlohmann::json skipped = nlohmann::json::array();
  DeviceFlags flags = o.device;  // --cpu-gemm all: the default first, see cpu_bench_runs
  const bool every_gemm = flags.cpu_gemm == "all";
  if (every_gemm) flags.cpu_gemm = cpu_gemm_name(CpuGemm::kDefault);
  if (o.device.device == "all") {
    std::string why;
    DeviceFlags auto_flags = flags;
    auto_flags.device = "auto";
    BackendOptions bo = backend_options(auto_flags);
    backends = make_all_backends(bo, &why);
    if (!why.empty()) skipped.push_back({{"device", "cuda"}, {"reason", why}});
  } else {
    backends.push_back(make_backend(backend_options(flags)));
  }
  DeviceFlags cpu_flags = flags;  // the CPU side of --device all|cpu|cuda
  cpu_flags.device = "cpu";
  const BackendOptions base = backend_options(cpu_flags);
  // What the CPU rows really do (keep where the build cannot flush), not just what was asked.
  const bool flushes = cpu_flushes_denormals(base.cpu);
  const std::vector<CpuOptions> cpu_runs = cpu_bench_runs(base.cpu, every_gemm, o.thread_sweep);
  if (backends.front()->kind() == BackendKind::kCpu) {  // one CPU backend per configuration
    backends.erase(backends.begin());
    for (auto it = cpu_runs.rbegin(); it != cpu_runs.rend(); ++it)
      backends.insert(backends.begin(), make_cpu_backend(*it));
  }
  std::map<std::string, PeakInfo> peaks;
  for (const auto& be : backends) {
    if (be->kind() == BackendKind::kCuda)
      peaks["cuda"] = cuda_peak(0);
    else
      peaks["cpu"] = cpu_peak(threads);
  }

  const std::vector<int64_t> batches = o.sweep ? kSweepBatches : std::vector<int64_t>{o.cfg.batch};
  const auto plural = [](int64_t n, const char* word) {
    return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
  };
  // run_bench times at most one epoch's steps: say what runs, not what was asked.
  const int64_t epoch_steps = std::max<int64_t>(1, data.set.count / o.cfg.batch);
  const int64_t steps = o.sweep ? o.cfg.steps : std::min(o.cfg.steps, epoch_steps);
  std::string intro = fmt::format(
      "mnist-mlp {} bench | model {} | {}, {} loops, subnormals {}\ndata   {}\ntiming median of {} "
      "x {}{}{} after {}; phases from eagerly stepped, timed steps\n",
      MLP_VERSION, format_sizes(o.cfg.sizes), plural(threads, "thread"), cpu_vector_width(),
      flushes ? "flushed" : "kept", data.what, plural(o.cfg.repeats, "repeat"),
      plural(steps, "step"),
      steps < o.cfg.steps
          ? fmt::format(" (--steps {} is more than one epoch of {})", o.cfg.steps, epoch_steps)
          : "",
      o.sweep ? fmt::format(" (x {}/batch)", o.cfg.batch) : "",
      plural(o.cfg.warmup, "warm-up step"));
  for (const auto& [dev, p] : peaks)
    intro +=
        fmt::format("peak   {}: {}{}\n", dev,
                    p.gflops > 0 ? fmt::format("{:.1f} GFLOP/s FP32, ", p.gflops) : "", p.source);
  for (const auto& s : skipped)
    intro += fmt::format("skip   {}: {}\n", s["device"].get<std::string>(),
                         s["reason"].get<std::string>());
  fmt::print(o.json ? stderr : stdout, "{}", intro);
  std::fflush(o.json ? stderr : stdout);

  if (o.kernels) return run_kernels(o, backends, peaks, batches, data.set);
  std::vector<BenchResult> rows;
  std::vector<double> speedups;
  EngineRows engine_rows;  // both engines, in run order
  for (int64_t b : batches) {
    BenchConfig c = o.cfg;
    c.batch = b;
    if (o.sweep) {  // about the same number of samples per row
      c.steps = std::max<int64_t>(3, o.cfg.steps * o.cfg.batch / b);
      c.warmup = o.cfg.warmup > 0 ? std::max<int64_t>(1, o.cfg.warmup * o.cfg.batch / b) : 0;
    }
    double cpu_sps = 0;
    std::size_t cpu_row = 0;
    for (auto& be : backends) {
      const std::string dev = backend_kind_name(be->kind());
      if (!o.engine.cublas()) {  // --engine fused|all: the fused row (cli/bench_engines.h)
        add_fused_row(*be, data.set, c, peaks[dev], o.device.device == "all", o.sweep, &engine_rows,
                      &skipped);
        if (o.engine.fused()) continue;
      }
      const int64_t ran = std::min(c.steps, std::max<int64_t>(1, data.set.count / b));
      fmt::print(stderr, "bench: {} batch {} ({} x {})...\n", dev, b, plural(ran, "step"),
                 c.repeats);
      if (dev == "cpu") {
        const CpuOptions& run = cpu_runs[cpu_row++];
        rows.push_back(
            run_bench(*be, data.set, c, scale_cpu_peak(peaks[dev], threads, run.threads)));
        rows.back().threads = run.threads;
        rows.back().cpu_gemm = cpu_gemm_name(run.gemm);
        if (cpu_row == 1) cpu_sps = rows.back().samples_per_sec;  // the default configuration
      } else {
        rows.push_back(run_bench(*be, data.set, c, peaks[dev]));
      }
      engine_rows.emplace_back("cublas", rows.back());
      speedups.push_back(dev == "cuda" && cpu_sps > 0 ? rows.back().samples_per_sec / cpu_sps : 0);
    }
  }

  double cpu_peak_before = 0, cpu_peak_after = 0;  // for peaks.cpu in --json
  if (peaks.count("cpu") && peaks["cpu"].gflops > 0) {
    cpu_peak_before = peaks["cpu"].gflops;
    cpu_peak_after = measure_cpu_peak_again(&peaks["cpu"], threads, o.json ? stderr : stdout);
    restate_cpu_peak(rows, peaks["cpu"], threads);
  }

  NeighbourResult neighbour;
  if (o.neighbour) {
    BenchConfig c = o.cfg;
    fmt::print(stderr, "bench: cpu beside a spinning process, {} threads vs 1...\n",
               resolve_cpu_threads(base.cpu.threads));
    neighbour = run_neighbour_bench(data.set, c, base.cpu);
  }
  const std::string neighbour_line =
      o.neighbour ? fmt::format(
                        "\nbusy neighbour (one spinning process): {} threads {:.0f} samples/s, "
                        "1 thread {:.0f} samples/s: {:.2f}x\n",
                        neighbour.threads, neighbour.samples_per_sec,
                        neighbour.samples_per_sec_one_thread, neighbour.ratio)
                  : "";
  if (!o.json) {
    if (!rows.empty()) print_tables(rows, speedups);
    if (!o.engine.cublas()) print_engine_table(engine_rows);
    fmt::print("{}{}", format_cpu_gemm_report(rows), neighbour_line);
    return 0;
  }
  nlohmann::json j = {{"version", MLP_VERSION},
                      {"tool", "mnist-mlp"},
                      {"data", data.what},
                      {"data_source", data.real ? "mnist" : "synthetic"},
                      {"layers", o.cfg.sizes},
                      {"threads", threads},
                      {"steps", steps},
                      {"steps_requested", o.cfg.steps},
                      {"warmup", o.cfg.warmup},
                      {"repeats", o.cfg.repeats},
                      {"graph", o.cfg.use_graph},
                      {"tf32", o.device.tf32},
                      {"sweep", o.sweep},
                      {"gemm", o.device.gemm},
                      {"denormals", flushes ? "flush" : "keep"},
                      {"cpu_vector_width", cpu_vector_width()},
                      {"skipped", skipped}};
  for (const auto& [dev, p] : peaks)
    j["peaks"][dev] = {{"gflops", p.gflops}, {"gbps", p.gbps}, {"source", p.source}};
  if (cpu_peak_after > 0) {
    j["peaks"]["cpu"]["gflops_before_runs"] = cpu_peak_before;
    j["peaks"]["cpu"]["gflops_after_runs"] = cpu_peak_after;
  }
  if (o.neighbour)
    j["neighbour"] = {{"threads", neighbour.threads},
                      {"samples_per_sec", neighbour.samples_per_sec},
                      {"samples_per_sec_one_thread", neighbour.samples_per_sec_one_thread},
                      {"ratio", neighbour.ratio}};
  j["results"] = nlohmann::json::array();
  for (std::size_t i = 0; i < rows.size(); ++i)
    j["results"].push_back(to_json(rows[i], speedups[i]));
  j["engine"] = o.engine.name;
  j["engines"] = engines_json(engine_rows);  // every row of either engine (fused: only here)
  fmt::print("{}\n", j.dump(2));
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& root) {
  auto o = std::make_shared<BenchOptions>();
  BenchConfig& c = o->cfg;
  CLI::App* app = root.add_subcommand(
      "bench",
      "Train for a fixed number of steps on each backend and report samples/s, epoch "
      "time, time per phase, GFLOP/s vs peak and the GPU/CPU speed-up");
  app->add_option("--steps", c.steps,
                  "Timed training steps per repeat (at most one epoch: more runs one epoch, "
                  "and the report says so)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app->add_option("--warmup", c.warmup, "Untimed steps first")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  app->add_option("--repeats", c.repeats, "Timed repeats; every figure is their median")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app->add_option("--batch-size", c.batch, "Samples per step")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app->add_option("--hidden", o->hidden, "Hidden layer sizes, comma-separated")
      ->delimiter(',')
      ->default_str("500,500,500")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  add_device_flags(app, o->device, /*bench_choices=*/true);
  add_engine_flag(app, o->engine, /*bench_choices=*/true);
  app->add_flag("--sweep", o->sweep,
                "Measure batch sizes 100, 256, 512, 1024, 2048 and 4096 instead of "
                "--batch-size, one row each, every row training about --steps x --batch-size "
                "samples (fewer steps for larger batches): where throughput levels off");
  app->add_flag("--thread-sweep", o->thread_sweep,
                "CPU: one row per thread count 1..physical cores (with --cpu-gemm all: per "
                "library too)");
  app->add_flag("--neighbour", o->neighbour,
                "CPU: also train beside a spinning process, --threads vs 1 thread, and report "
                "the ratio");
  app->add_flag("--no-graph", o->no_graph, "CUDA: launch each step eagerly, no CUDA Graph");
  app->add_flag("--kernels", o->kernels,
                "Instead of the throughput rows: every kernel of the step timed alone (the "
                "names Nsight shows as NVTX ranges), us/step, GB/s or GFLOP/s vs peak, and the "
                "step's critical path");
  app->add_option("--data", o->data_dir,
                  "MNIST directory; synthetic data when it has no "
                  "training set")
      ->capture_default_str();
  app->add_flag("--synthetic", o->synthetic, "Use synthetic random bytes even if MNIST is present");
  app->add_option("--seed", c.seed, "Seed for init (and synthetic data)")->capture_default_str();
  app->add_flag("--json", o->json,
                "Print one JSON document on stdout (the tables go away; "
                "the header goes to stderr)");
  return {app, [o] { return run_bench_command(*o); }};
}

}  // namespace mlp::cli
