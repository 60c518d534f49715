// The sim's counters behind gpubroker_sim_counters (gpubroker/sim/sim_driver.h).
//
// Relaxed atomics: each is a statistic that no other memory access is ordered against. Written
// by API calls (live objects) and by stream workers (work done), from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "gpubroker/sim/sim_driver.h"

namespace gpubroker::sim {

struct Counters {
  std::atomic<std::uint64_t> live_allocations{0};
  std::atomic<std::uint64_t> live_allocation_bytes{0};
  std::atomic<std::uint64_t> live_streams{0};
  std::atomic<std::uint64_t> live_events{0};
  std::atomic<std::uint64_t> live_modules{0};
  std::atomic<std::uint64_t> live_graphs{0};
  std::atomic<std::uint64_t> live_graph_execs{0};
  std::atomic<std::uint64_t> live_host_registrations{0};
  std::atomic<std::uint64_t> live_vmm_reservations{0};
  std::atomic<std::uint64_t> live_vmm_mappings{0};
  std::atomic<std::uint64_t> live_cublas_handles{0};
  std::atomic<std::uint64_t> bytes_host_to_device{0};
  std::atomic<std::uint64_t> bytes_device_to_host{0};
  std::atomic<std::uint64_t> bytes_device_to_device{0};
  std::atomic<std::uint64_t> bytes_host_to_host{0};
  std::atomic<std::uint64_t> bytes_memset{0};
  std::atomic<std::uint64_t> kernels_launched{0};
  std::atomic<std::uint64_t> host_functions_run{0};
  std::atomic<std::uint64_t> graphs_launched{0};
  std::atomic<std::uint64_t> gemms_run{0};
  std::atomic<std::uint64_t> trsms_run{0};

  [[nodiscard]] GpubrokerSimCounters snapshot() const;
};

// The process's one set; constant-initialized, never destroyed before the workers stop using it.
Counters& counters();

// Has the process write the counters to `path` when it exits (or unloads the sim), as one JSON
// object of the GpubrokerSimCounters fields: GPUBROKER_SIM_COUNTERS, for figures taken through a
// broker, whose sim no other process can ask. Called once, by the first cuInit.
void write_counters_at_exit(std::string path);

inline void count(std::atomic<std::uint64_t>& counter, std::uint64_t amount = 1) {
  counter.fetch_add(amount, std::memory_order_relaxed);
}
inline void uncount(std::atomic<std::uint64_t>& counter, std::uint64_t amount = 1) {
  counter.fetch_sub(amount, std::memory_order_relaxed);
}

}  // namespace gpubroker::sim
