// gpubroker-bench runtime: the CUDA runtime as a runner sees it, through the libcudart shim and a
// broker, against the baselines of the same run.
//
// Without --socket it starts a sim broker of its own (the gpu-broker binary next to this one).
// The shim is loaded with dlopen, exactly as ggml's loader would find it, so every figure includes
// the shim's own work. Measured: a synchronous null call (cudaStreamQuery on the default stream);
// cudaMemcpy of 64 MiB host-to-device and device-to-host from pageable and from pinned memory,
// against a single-thread memcpy of the same size; and the CPU bytes copied on the pinned path,
// read from the broker's counters (bytes that crossed the staging pipes). The synchronous call is
// measured with the call trace off and on (GPUBROKER_TRACE, shim/trace/) in alternating blocks of
// the same run: the shim is loaded with tracing armed, and the bench flips the shim's flag.
#include <dlfcn.h>
#include <fmt/core.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "ipc/socket_path.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/client_processes.h"
#include "tools/bench/report.h"

namespace gpubroker::bench {

namespace {

using ipc::monotonic_ns;

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "gpubroker-bench runtime: {}\n", what);
  std::exit(1);
}

struct Runtime {
  int (*stream_query)(void*);
  int (*malloc_)(void**, std::size_t);
  int (*free_)(void*);
  int (*malloc_host)(void**, std::size_t);
  int (*free_host)(void*);
  int (*memcpy_)(void*, const void*, std::size_t, int);

  static Runtime load(const std::string& path) {
    void* library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) die(fmt::format("cannot load the runtime shim {}: {}", path, ::dlerror()));
    auto symbol = [&](const char* name) {
      void* p = ::dlsym(library, name);
      if (p == nullptr) die(fmt::format("the shim lacks {}", name));
      return p;
    };
    return Runtime{reinterpret_cast<int (*)(void*)>(symbol("cudaStreamQuery")),
                   reinterpret_cast<int (*)(void**, std::size_t)>(symbol("cudaMalloc")),
                   reinterpret_cast<int (*)(void*)>(symbol("cudaFree")),
                   reinterpret_cast<int (*)(void**, std::size_t)>(symbol("cudaMallocHost")),
                   reinterpret_cast<int (*)(void*)>(symbol("cudaFreeHost")),
                   reinterpret_cast<int (*)(void*, const void*, std::size_t, int)>(symbol("cudaMemcpy"))};
  }
};

std::uint64_t staged_bytes(const std::string& socket) {
  ipc::ClientOptions options;
  options.socket_path = socket;
  options.protocol = wire::kProtocol;  // gpu-broker's
  options.program = "gpubroker-bench";
  auto session = ipc::ClientSession::connect(options);
  if (!session) die("cannot read the broker's counters: " + ipc::describe(session.error()));
  auto totals = session.value()->call(wire::RequestKind::kBrokerTotals, {});
  if (!totals) die("kBrokerTotals failed");
  return totals.value().result_as<wire::BrokerTotals>().staged_bytes;
}

double copy_gbps(const Runtime& rt, void* destination, const void* source, std::size_t bytes, int kind, int repeats) {
  if (rt.memcpy_(destination, source, bytes, kind) != 0) die("cudaMemcpy failed");  // warm-up
  const std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) {
    if (rt.memcpy_(destination, source, bytes, kind) != 0) die("cudaMemcpy failed");
  }
  return static_cast<double>(bytes) * repeats / static_cast<double>(monotonic_ns() - t0);
}

}  // namespace

int run_runtime_bench(int argc, char** argv) {
  bool json = false;
  std::string socket;
  std::size_t calls = 200'000;
  int repeats = 8;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--quick") calls = 20'000, repeats = 2;
    else if (arg.rfind("--socket=", 0) == 0) socket = std::string(arg.substr(9));
    else die(fmt::format("unknown option '{}'", arg));
  }

  const BenchBroker broker(socket, "", "runtime");
  socket = broker.socket();
  ::setenv("GPUBROKER_SOCKET", socket.c_str(), 1);
  const std::string shim = runtime_shim_path();
  if (shim.empty()) die("no libcudart.so.13 shim found beside this binary");
  // The shim reads GPUBROKER_TRACE when it loads: armed here (into a directory of the bench's), and
  // unset at once so that the bench's child processes do not trace.
  const std::filesystem::path trace_dir = std::filesystem::temp_directory_path() / fmt::format("gpubroker-bench-trace-{}", ::getpid());
  std::filesystem::create_directories(trace_dir);
  ::setenv("GPUBROKER_TRACE", (trace_dir / "trace").c_str(), 1);
  const Runtime rt = Runtime::load(shim);
  ::unsetenv("GPUBROKER_TRACE");
  // The flag lives in the shims' client library, a dependency of the (locally loaded) shim.
  void* loaded = ::dlopen(shim.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL);
  bool* trace_enabled = loaded == nullptr ? nullptr : static_cast<bool*>(::dlsym(loaded, "g_trace_enabled"));
  if (trace_enabled == nullptr) die("the shim has no call trace (g_trace_enabled)");
  // The trace's clock: the TSC where the recorder calibrated it, else clock_gettime. Where it is
  // the TSC, a third kind of block traces with clock_gettime, to show what the TSC saves.
  bool* trace_tsc = static_cast<bool*>(::dlsym(loaded, "g_trace_tsc"));
  const bool tsc = trace_tsc != nullptr && *trace_tsc;

  // Synchronous null calls, with the trace off and on in alternating blocks (after a warm-up).
  *trace_enabled = false;
  if (rt.stream_query(nullptr) != 0) die("cudaStreamQuery failed: is the broker up?");
  for (std::size_t i = 0; i < calls / 10; ++i) rt.stream_query(nullptr);
  std::vector<double> samples, traced_samples, traced_monotonic_samples;
  samples.reserve(calls);
  traced_samples.reserve(calls);
  traced_monotonic_samples.reserve(calls);
  constexpr std::size_t kBlock = 1000;
  const std::size_t kinds = tsc ? 3 : 2;  // off, on, and on with clock_gettime
  for (std::size_t block = 0; block < kinds * calls / kBlock; ++block) {
    const std::size_t kind = block % kinds;
    *trace_enabled = kind != 0;
    if (tsc) *trace_tsc = kind != 2;
    std::vector<double>& into = kind == 0 ? samples : kind == 1 ? traced_samples : traced_monotonic_samples;
    for (std::size_t i = 0; i < kBlock; ++i) {
      const std::int64_t t0 = monotonic_ns();
      rt.stream_query(nullptr);
      into.push_back(static_cast<double>(monotonic_ns() - t0));
    }
  }
  *trace_enabled = false;
  if (tsc) *trace_tsc = true;
  std::error_code ignored;
  std::filesystem::remove_all(trace_dir, ignored);
  const Percentiles sync = percentiles(samples);
  const Percentiles traced = percentiles(traced_samples);
  const Percentiles traced_monotonic = tsc ? percentiles(traced_monotonic_samples) : traced;

  // 64 MiB copies, pageable and pinned, and the memcpy baseline.
  constexpr std::size_t kBytes = 64ull << 20;
  std::vector<std::byte> pageable(kBytes, std::byte{1}), baseline_destination(kBytes, std::byte{2});
  void* device = nullptr;
  void* pinned = nullptr;
  if (rt.malloc_(&device, kBytes) != 0 || rt.malloc_host(&pinned, kBytes) != 0) die("allocation failed");
  std::memset(pinned, 3, kBytes);
  const double h2d_pageable = copy_gbps(rt, device, pageable.data(), kBytes, 1, repeats);
  const double d2h_pageable = copy_gbps(rt, pageable.data(), device, kBytes, 2, repeats);
  const std::uint64_t staged_before = staged_bytes(socket);
  const double h2d_pinned = copy_gbps(rt, device, pinned, kBytes, 1, repeats);
  const double d2h_pinned = copy_gbps(rt, pinned, device, kBytes, 2, repeats);
  const std::uint64_t pinned_cpu_bytes = staged_bytes(socket) - staged_before;
  std::memcpy(baseline_destination.data(), pageable.data(), kBytes);
  const std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) std::memcpy(baseline_destination.data(), pageable.data(), kBytes);
  const double memcpy_gbps = static_cast<double>(kBytes) * repeats / static_cast<double>(monotonic_ns() - t0);
  rt.free_(device);
  rt.free_host(pinned);

  // Fresh processes: the first call (process start to the first successful cudaMalloc) and 16
  // client processes of synchronous calls at once (client_processes.h).
  std::vector<double> first_calls = fresh_process_ms(socket, "first-call", calls > 20'000 ? 10 : 3);
  const double first_call_ms = percentiles(first_calls).p50;
  const ClientsRun clients16 = run_sync_clients(socket, broker.pid(), 16, calls > 20'000 ? 1.0 : 0.2);

  Report report;
  report.latency("sync_call_ns", sync);
  report.latency("sync_call_traced_ns", traced);
  report.number("trace_added_p50_ns", traced.p50 - sync.p50);
  if (tsc) report.number("trace_added_p50_ns_clock_gettime", traced_monotonic.p50 - sync.p50);
  report.number("h2d_pageable_gbps", h2d_pageable);
  report.number("d2h_pageable_gbps", d2h_pageable);
  report.number("h2d_pinned_gbps", h2d_pinned);
  report.number("d2h_pinned_gbps", d2h_pinned);
  report.number("memcpy_gbps", memcpy_gbps);
  report.number("pinned_cpu_bytes_copied", static_cast<double>(pinned_cpu_bytes));
  report.number("h2d_pageable_over_memcpy", h2d_pageable / memcpy_gbps);
  report.number("d2h_pageable_over_memcpy", d2h_pageable / memcpy_gbps);
  report.number("first_call_ms", first_call_ms);
  report.number("clients16_sync_p99_ns", clients16.sync_ns.p99);
  if (json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench runtime on {} (broker: {})\n", machine_name(), broker.started() ? "sim, started by the bench" : socket);
  fmt::print("synchronous runtime call (cudaStreamQuery): p50 {:.0f} ns, p99 {:.0f} ns, p99.9 {:.0f} ns\n", sync.p50,
             sync.p99, sync.p999);
  fmt::print("  with the call trace on (same run, alternating blocks): p50 {:.0f} ns, p99 {:.0f} ns: {:+.0f} ns at p50 ({:.3f}x)\n",
             traced.p50, traced.p99, traced.p50 - sync.p50, traced.p50 / sync.p50);
  fmt::print("    the trace's clock: {}\n", tsc ? fmt::format("the TSC; with clock_gettime instead (same run): p50 {:.0f} ns: {:+.0f} ns at p50",
                                                              traced_monotonic.p50, traced_monotonic.p50 - sync.p50)
                                                : std::string("clock_gettime (no constant, non-stop TSC here)"));
  fmt::print("cudaMemcpy 64 MiB x {}:\n", repeats);
  fmt::print("  pageable  H2D {:6.2f} GB/s ({:.2f}x memcpy)   D2H {:6.2f} GB/s ({:.2f}x memcpy)\n", h2d_pageable,
             h2d_pageable / memcpy_gbps, d2h_pageable, d2h_pageable / memcpy_gbps);
  fmt::print("  pinned    H2D {:6.2f} GB/s ({:.2f}x memcpy)   D2H {:6.2f} GB/s ({:.2f}x memcpy)\n", h2d_pinned,
             h2d_pinned / memcpy_gbps, d2h_pinned, d2h_pinned / memcpy_gbps);
  fmt::print("  memcpy baseline, one thread: {:.2f} GB/s\n", memcpy_gbps);
  fmt::print("CPU bytes copied on the pinned path: {}\n", pinned_cpu_bytes);
  fmt::print("first call (fresh process start to first cudaMalloc), p50: {:.3f} ms\n", first_call_ms);
  fmt::print("16 client processes, synchronous call: p50 {:.0f} ns, p99 {:.0f} ns\n", clients16.sync_ns.p50,
             clients16.sync_ns.p99);
  return 0;
}

}  // namespace gpubroker::bench
