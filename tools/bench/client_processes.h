// Client processes for gpubroker-bench: each is a fresh exec of this binary (`gpubroker-bench
// --child MODE ...`), so it loads the shims cold and holds a session of its own, as a runner does.
// The parent starts them, releases them together, and reads their results from pipes.
//
// Modes:
//   sync-client  loads libcudart, warms up, reports ready, waits for the start, times
//                synchronous calls (cudaStreamQuery) for a fixed time, writes a latency
//                histogram, then holds its session open until released (so the broker's threads
//                for it are still alive when the parent reads the broker's CPU time)
//   first-call   writes the monotonic time of its first successful cudaMalloc
//   discovery    writes the time at which an Ollama-style discovery pass through libcudart,
//                libcuda and NVML finished
//   start-only   writes the time at which its main() ran (the process start floor)
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/bench/report.h"

namespace gpubroker::bench {

// Latencies in ns, log-linear: 64 buckets per power of two (under 1.6% error), mergeable
// across processes by adding counts.
class LatencyHistogram {
 public:
  void add(std::uint64_t ns);
  void merge(const LatencyHistogram& other);
  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] Percentiles percentiles() const;

 private:
  static constexpr int kSubBuckets = 64;
  static constexpr int kBuckets = 36 * kSubBuckets;  // up to 2^40 ns
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
};

struct ClientsRun {
  Percentiles sync_ns;                  // every call of every client
  double calls_per_s = 0;               // all clients together, first start to last end
  std::uint64_t calls = 0;
  double broker_cpu_ns_per_call = 0;    // 0 when the broker's pid is unknown
  double broker_idle_cpu_fraction = 0;  // broker CPU / wall time while the clients were connected and idle
};

// Starts `clients` sync-client processes against the broker at `socket`, lets them run for
// `seconds`, and reads the broker's CPU time (if `broker_pid` > 0) over the timed part and,
// when `idle_seconds` > 0, over an idle stretch before it.
ClientsRun run_sync_clients(const std::string& socket, pid_t broker_pid, int clients, double seconds,
                            double idle_seconds = 0);

// Runs `mode` (first-call, discovery, start-only) in `runs` fresh processes one after another;
// returns, per run, ms from just before fork to the time the child reported.
std::vector<double> fresh_process_ms(const std::string& socket, const char* mode, int runs);

// The entry point of `gpubroker-bench --child ...`.
int run_child(int argc, char** argv);

}  // namespace gpubroker::bench
