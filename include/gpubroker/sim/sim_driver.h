// Introspection of the sim driver (libgpubroker-sim.so) for tests and the broker's leak checks.
// The sim also implements the cuBLAS subset of gpubroker/cuda/cublas_api.h (sim/cublas.cc).
//
// The sim counts what is alive and what it has done; gpubroker_sim_counters copies a snapshot.
// Each field is read on its own (relaxed atomics): a snapshot taken while other threads call the
// driver is not one instant, but after the calls return and the streams are synchronized it is
// exact. Resolve it with dlsym(handle, "gpubroker_sim_counters"); it is absent from libcuda.so.1,
// which is how a caller tells the two drivers apart.
//
// Configuration, read once by the first cuInit:
//   GPUBROKER_SIM_DEVICES=N          devices (default 1, at most 32; 0 makes cuInit fail with
//                                    CUDA_ERROR_NO_DEVICE); gpubroker_sim_configure_devices,
//                                    called before cuInit, overrides it (gpu-broker --sim-devices)
//   GPUBROKER_SIM_MEMORY_BYTES=B     device memory per device (default 80 GiB)
//   GPUBROKER_SIM_KERNELS=a.so:b.so  kernel plugins (gpubroker/sim/kernel_plugin.h); empty: none;
//                                    gpubroker_sim_configure_kernels overrides it (gpu-broker
//                                    --sim-kernels, whose default is the ggml plugin next to the sim)
//   GPUBROKER_SIM_DISCOVER=FILE      discovery mode (sim/kernel_discovery.h): each distinct kernel a
//                                    run launches is recorded in FILE, and a kernel without a host
//                                    implementation runs as a no-op; gpubroker_sim_configure_discovery
//                                    overrides it (gpu-broker --sim-discover)
//   GPUBROKER_SIM_COUNTERS=FILE      the counters below, written to FILE as one JSON object when the
//                                    process exits (figures taken through a broker)
#pragma once

#ifdef __cplusplus
#include <cstdint>
extern "C" {
#else
#include <stdint.h>
#endif

typedef struct GpubrokerSimCounters {
  // Alive now. Allocations are cuMemAlloc blocks plus VMM physical allocations (cuMemCreate),
  // the latter until released and unmapped everywhere.
  uint64_t live_allocations;
  uint64_t live_allocation_bytes;
  uint64_t live_streams;  // created streams not yet destroyed; the NULL streams are not counted
  uint64_t live_events;
  uint64_t live_modules;
  uint64_t live_graphs;
  uint64_t live_graph_execs;
  uint64_t live_host_registrations;
  uint64_t live_vmm_reservations;
  uint64_t live_vmm_mappings;
  // Done so far, since the library was loaded: work executed (graphs_launched: graph launches
  // accepted).
  uint64_t bytes_host_to_device;
  uint64_t bytes_device_to_host;
  uint64_t bytes_device_to_device;
  uint64_t bytes_host_to_host;  // 2D copies between two host buffers
  uint64_t bytes_memset;
  uint64_t kernels_launched;  // host implementations run
  uint64_t host_functions_run;
  uint64_t graphs_launched;
  // cuBLAS (appended, so that the fields above keep their offsets): handles created and not yet
  // destroyed; GEMM calls (one per call, batched or not) and cublasStrsmBatched calls executed.
  uint64_t live_cublas_handles;
  uint64_t gemms_run;
  uint64_t trsms_run;
} GpubrokerSimCounters;

// Exported by libgpubroker-sim.so. Never fails; may be called before cuInit and from any thread.
void gpubroker_sim_counters(GpubrokerSimCounters* counters);
typedef void (*GpubrokerSimCountersFn)(GpubrokerSimCounters* counters);

// Sets the number of devices the first cuInit makes (0 to 32), in place of GPUBROKER_SIM_DEVICES:
// the broker's --sim-devices, which a program configures without changing its environment.
// Returns 0 (CUDA_SUCCESS), 1 (CUDA_ERROR_INVALID_VALUE) for more than 32, or 401
// (CUDA_ERROR_ILLEGAL_STATE) once cuInit has run. Call it before cuInit, from one thread.
int gpubroker_sim_configure_devices(unsigned count);
typedef int (*GpubrokerSimConfigureDevicesFn)(unsigned count);

// Sets the kernel plugins the first cuInit loads (a colon-separated list of paths; "" loads none),
// in place of GPUBROKER_SIM_KERNELS: the broker's --sim-kernels. Returns 0, 1
// (CUDA_ERROR_INVALID_VALUE) for a null list, 2 (CUDA_ERROR_OUT_OF_MEMORY) or 401
// (CUDA_ERROR_ILLEGAL_STATE) once cuInit has run. Call it before cuInit, from one thread.
int gpubroker_sim_configure_kernels(const char* plugin_paths);
typedef int (*GpubrokerSimConfigureKernelsFn)(const char* plugin_paths);

// Turns on discovery mode for the first cuInit, recording to `record_path` ("" leaves it off), in
// place of GPUBROKER_SIM_DISCOVER: the broker's --sim-discover. That cuInit fails with
// CUDA_ERROR_INVALID_VALUE when the file cannot be opened for appending. Returns as
// gpubroker_sim_configure_kernels does. Call it before cuInit, from one thread.
int gpubroker_sim_configure_discovery(const char* record_path);
typedef int (*GpubrokerSimConfigureDiscoveryFn)(const char* record_path);

#ifdef __cplusplus
}  // extern "C"
#endif
