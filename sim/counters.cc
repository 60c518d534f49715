#include "sim/counters.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace gpubroker::sim {
namespace {

std::string& exit_record_path() {
  static auto* path = new std::string;  // never destroyed: read by the exit handler
  return *path;
}

// Runs at exit (or when the sim is unloaded), on the thread that ends the process.
void write_exit_record() {
  const GpubrokerSimCounters c = counters().snapshot();
  std::FILE* file = std::fopen(exit_record_path().c_str(), "w");
  if (file == nullptr) return;  // nobody is left to tell but stderr, and the file's absence says it
  fmt::print(file,
             "{{\"kernels_launched\": {}, \"graphs_launched\": {}, \"gemms_run\": {}, \"trsms_run\": {}, "
             "\"host_functions_run\": {}, \"bytes_host_to_device\": {}, \"bytes_device_to_host\": {}, "
             "\"bytes_device_to_device\": {}, \"bytes_memset\": {}}}\n",
             c.kernels_launched, c.graphs_launched, c.gemms_run, c.trsms_run, c.host_functions_run,
             c.bytes_host_to_device, c.bytes_device_to_host, c.bytes_device_to_device, c.bytes_memset);
  std::fclose(file);
}

}  // namespace

void write_counters_at_exit(std::string path) {
  exit_record_path() = std::move(path);
  std::atexit(write_exit_record);
}

Counters& counters() {
  static Counters instance;  // trivially destructible atomics: safe to touch during exit
  return instance;
}

GpubrokerSimCounters Counters::snapshot() const {
  auto read = [](const std::atomic<std::uint64_t>& counter) { return counter.load(std::memory_order_relaxed); };
  GpubrokerSimCounters out{};
  out.live_allocations = read(live_allocations);
  out.live_allocation_bytes = read(live_allocation_bytes);
  out.live_streams = read(live_streams);
  out.live_events = read(live_events);
  out.live_modules = read(live_modules);
  out.live_graphs = read(live_graphs);
  out.live_graph_execs = read(live_graph_execs);
  out.live_host_registrations = read(live_host_registrations);
  out.live_vmm_reservations = read(live_vmm_reservations);
  out.live_vmm_mappings = read(live_vmm_mappings);
  out.bytes_host_to_device = read(bytes_host_to_device);
  out.bytes_device_to_host = read(bytes_device_to_host);
  out.bytes_device_to_device = read(bytes_device_to_device);
  out.bytes_host_to_host = read(bytes_host_to_host);
  out.bytes_memset = read(bytes_memset);
  out.kernels_launched = read(kernels_launched);
  out.host_functions_run = read(host_functions_run);
  out.graphs_launched = read(graphs_launched);
  out.live_cublas_handles = read(live_cublas_handles);
  out.gemms_run = read(gemms_run);
  out.trsms_run = read(trsms_run);
  return out;
}

}  // namespace gpubroker::sim
