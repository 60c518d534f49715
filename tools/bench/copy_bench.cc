// gpubroker-bench copies: cudaMemcpy through the libcudart shim and a broker, by size (4 KiB,
// 16 KiB, ... up to --max-size, at most 1 GiB), host-to-device and device-to-host, from pageable
// and from pinned (cudaMallocHost) memory, against a single-thread memcpy of the same size in the
// same run. Also the CPU bytes copied on the pinned path: the broker's count of bytes that crossed
// the staging pipes while the pinned copies ran (0 means no process copied a byte).
//
// The default run stops at 64 MiB so that it stays short and small; --max-size=1G is the full
// sweep (it allocates about 4 GiB of host memory: pageable, pinned, the sim's device memory and
// the memcpy destination).
#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ipc/system.h"
#include "tools/bench/baselines.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/report.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

namespace {

using ipc::monotonic_ns;
constexpr std::string_view kScenario = "copies";

std::string size_label(std::size_t bytes) {
  if (bytes >= (1u << 30)) return fmt::format("{}GiB", bytes >> 30);
  if (bytes >= (1u << 20)) return fmt::format("{}MiB", bytes >> 20);
  return fmt::format("{}KiB", bytes >> 10);
}

std::size_t parse_size(std::string_view text) {
  std::size_t used = 0;
  const std::string s(text);
  std::size_t value = std::stoull(s, &used);
  const std::string_view unit = text.substr(used);
  if (unit == "K" || unit == "KiB") value <<= 10;
  else if (unit == "M" || unit == "MiB") value <<= 20;
  else if (unit == "G" || unit == "GiB") value <<= 30;
  else if (!unit.empty()) fail(kScenario, fmt::format("--max-size: unknown unit '{}'", unit));
  return value;
}

using Memcpy = int (*)(void*, const void*, std::size_t, int);

double copy_gbps(Memcpy memcpy_, void* destination, const void* source, std::size_t bytes, int kind, int repeats) {
  if (memcpy_(destination, source, bytes, kind) != 0) fail(kScenario, "cudaMemcpy failed");  // warm-up
  const std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) {
    if (memcpy_(destination, source, bytes, kind) != 0) fail(kScenario, "cudaMemcpy failed");
  }
  return static_cast<double>(bytes) * repeats / static_cast<double>(monotonic_ns() - t0);
}

struct Row {
  std::size_t bytes;
  int repeats;
  double h2d_pageable, d2h_pageable, h2d_pinned, d2h_pinned, memcpy_;
};

}  // namespace

int run_copy_bench(int argc, char** argv) {
  bool json = false;
  std::string socket;
  std::size_t max_size = 64ull << 20, bytes_per_point = 512ull << 20;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--quick") max_size = 1ull << 20, bytes_per_point = 16ull << 20;
    else if (arg.rfind("--socket=", 0) == 0) socket = std::string(arg.substr(9));
    else if (arg.rfind("--max-size=", 0) == 0) max_size = parse_size(arg.substr(11));
    else fail(kScenario, fmt::format("unknown option '{}'", arg));
  }
  if (max_size < 4096 || max_size > (1ull << 30)) fail(kScenario, "--max-size must be within 4K..1G");

  const BenchBroker broker(socket, "", "copies");
  ::setenv("GPUBROKER_SOCKET", broker.socket().c_str(), 1);
  const ShimLibrary runtime(runtime_shim_path(), kScenario);
  const auto memcpy_ = runtime.get<Memcpy>("cudaMemcpy");
  const auto malloc_ = runtime.get<int (*)(void**, std::size_t)>("cudaMalloc");
  const auto malloc_host = runtime.get<int (*)(void**, std::size_t)>("cudaMallocHost");
  const auto free_ = runtime.get<int (*)(void*)>("cudaFree");
  const auto free_host = runtime.get<int (*)(void*)>("cudaFreeHost");

  std::vector<std::byte> pageable(max_size, std::byte{1});
  void* device = nullptr;
  void* pinned = nullptr;
  if (malloc_(&device, max_size) != 0 || malloc_host(&pinned, max_size) != 0) fail(kScenario, "allocation failed");
  std::memset(pinned, 3, max_size);

  std::vector<Row> rows;
  std::uint64_t pinned_cpu_bytes = 0;
  for (std::size_t bytes = 4096; bytes <= max_size; bytes *= 4) {
    const int repeats = static_cast<int>(std::clamp<std::size_t>(bytes_per_point / bytes, 3, 20'000));
    Row row{bytes, repeats, 0, 0, 0, 0, 0};
    row.h2d_pageable = copy_gbps(memcpy_, device, pageable.data(), bytes, 1, repeats);
    row.d2h_pageable = copy_gbps(memcpy_, pageable.data(), device, bytes, 2, repeats);
    const std::uint64_t staged_before = broker_staged_bytes(broker.socket());
    row.h2d_pinned = copy_gbps(memcpy_, device, pinned, bytes, 1, repeats);
    row.d2h_pinned = copy_gbps(memcpy_, pinned, device, bytes, 2, repeats);
    pinned_cpu_bytes += broker_staged_bytes(broker.socket()) - staged_before;
    row.memcpy_ = memcpy_gbps(bytes, repeats);
    rows.push_back(row);
  }
  if (free_(device) != 0 || free_host(pinned) != 0) fail(kScenario, "free failed");

  Report report;
  for (const Row& r : rows) {
    const std::string key = "copy_" + size_label(r.bytes);
    report.number(key + "_h2d_pageable_gbps", r.h2d_pageable);
    report.number(key + "_d2h_pageable_gbps", r.d2h_pageable);
    report.number(key + "_h2d_pinned_gbps", r.h2d_pinned);
    report.number(key + "_d2h_pinned_gbps", r.d2h_pinned);
    report.number(key + "_memcpy_gbps", r.memcpy_);
    report.number(key + "_h2d_pageable_over_memcpy", r.h2d_pageable / r.memcpy_);
    report.number(key + "_d2h_pageable_over_memcpy", r.d2h_pageable / r.memcpy_);
  }
  report.number("max_size_bytes", static_cast<double>(max_size));
  report.number("pinned_cpu_bytes_copied", static_cast<double>(pinned_cpu_bytes));
  if (json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench copies on {} (broker: {}), GB/s and x memcpy of the same size\n", machine_name(),
             broker.started() ? "sim, started by the bench" : broker.socket());
  fmt::print("  {:>7} {:>6}  {:>17} {:>17}  {:>7} {:>7}  {:>7}\n", "size", "reps", "pageable H2D", "pageable D2H",
             "pin H2D", "pin D2H", "memcpy");
  for (const Row& r : rows) {
    fmt::print("  {:>7} {:>6}  {:>7.2f} ({:>5.2f}x) {:>7.2f} ({:>5.2f}x)  {:>7.2f} {:>7.2f}  {:>7.2f}\n",
               size_label(r.bytes), r.repeats, r.h2d_pageable, r.h2d_pageable / r.memcpy_, r.d2h_pageable,
               r.d2h_pageable / r.memcpy_, r.h2d_pinned, r.d2h_pinned, r.memcpy_);
  }
  fmt::print("CPU bytes copied on the pinned path (all sizes): {}\n", pinned_cpu_bytes);
  return 0;
}

}  // namespace gpubroker::bench
