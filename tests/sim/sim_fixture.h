// The sim as the tests load it: dlopen of libgpubroker-sim.so and dlsym of every entry of
// GPUBROKER_DRIVER_API and GPUBROKER_CUBLAS_API, exactly as the broker resolves a driver and a
// cuBLAS. Shared by the test files of sim_test; one sim per process (inline functions, one static).
//
// Each test frees what it creates and checks with require_nothing_left() that the live counters
// are back where they were.
#pragma once

#include <dlfcn.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "gpubroker/sim/sim_driver.h"
#include "sim_test_paths.h"

namespace sim_fixture {

using namespace gpubroker::cuda;

struct LoadedSim {
  void* library = nullptr;
  DriverTable cu;
  CublasTable blas;
  std::vector<std::string> missing;
  GpubrokerSimCountersFn counters = nullptr;
  void (*register_kernel)(const char*, GpubrokerSimKernel) = nullptr;
};

// dlopen + dlsym of every table entry, exactly as the broker resolves a driver.
inline LoadedSim load_sim() {
  LoadedSim sim;
  sim.library = dlopen(SIM_LIBRARY_PATH, RTLD_NOW | RTLD_LOCAL);
  if (sim.library == nullptr) FAIL("dlopen " << SIM_LIBRARY_PATH << ": " << dlerror());
#define RESOLVE(table, member, symbol, type)                                                      \
  sim.table.member = reinterpret_cast<std::add_pointer_t<type>>(dlsym(sim.library, #symbol)); \
  if (sim.table.member == nullptr) sim.missing.push_back(#symbol);
#define RESOLVE_DRIVER(member, symbol, type) RESOLVE(cu, member, symbol, type)
#define RESOLVE_CUBLAS(member, symbol, type) RESOLVE(blas, member, symbol, type)
  GPUBROKER_DRIVER_API(RESOLVE_DRIVER)
  GPUBROKER_CUBLAS_API(RESOLVE_CUBLAS)
#undef RESOLVE_CUBLAS
#undef RESOLVE_DRIVER
#undef RESOLVE
  sim.counters = reinterpret_cast<GpubrokerSimCountersFn>(dlsym(sim.library, "gpubroker_sim_counters"));
  sim.register_kernel = reinterpret_cast<void (*)(const char*, GpubrokerSimKernel)>(
      dlsym(sim.library, "gpubroker_sim_register_kernel"));
  return sim;
}

struct Sim {
  LoadedSim loaded;
  DriverTable& cu = loaded.cu;
  CublasTable& blas = loaded.blas;
  CUcontext context = nullptr;
};

// The process's sim, initialized with the test plugin, its primary context current on the caller.
inline Sim& sim() {
  static Sim* instance = [] {
    setenv("GPUBROKER_SIM_KERNELS", SIM_TEST_PLUGIN_PATH, 0);
    auto* created = new Sim{load_sim()};
    REQUIRE(created->loaded.missing.empty());
    REQUIRE(created->cu.init(0) == CUDA_SUCCESS);
    REQUIRE(created->cu.primary_ctx_retain(&created->context, 0) == CUDA_SUCCESS);
    return created;
  }();
  REQUIRE(instance->cu.ctx_set_current(instance->context) == CUDA_SUCCESS);
  return *instance;
}

inline GpubrokerSimCounters counters() {
  GpubrokerSimCounters snapshot{};
  sim().loaded.counters(&snapshot);
  return snapshot;
}

// Every live count is what it was in `before`.
inline void require_nothing_left(const GpubrokerSimCounters& before) {
  const GpubrokerSimCounters now = counters();
  CHECK(now.live_allocations == before.live_allocations);
  CHECK(now.live_allocation_bytes == before.live_allocation_bytes);
  CHECK(now.live_streams == before.live_streams);
  CHECK(now.live_events == before.live_events);
  CHECK(now.live_modules == before.live_modules);
  CHECK(now.live_graphs == before.live_graphs);
  CHECK(now.live_graph_execs == before.live_graph_execs);
  CHECK(now.live_host_registrations == before.live_host_registrations);
  CHECK(now.live_vmm_reservations == before.live_vmm_reservations);
  CHECK(now.live_vmm_mappings == before.live_vmm_mappings);
  CHECK(now.live_cublas_handles == before.live_cublas_handles);
}

// A host function that holds its stream until released: deterministic "work still pending".
struct Gate {
  std::atomic<bool> open{false};
  static void wait(void* gate) {
    while (!static_cast<Gate*>(gate)->open.load(std::memory_order_acquire))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
};

inline CUstream make_stream(unsigned flags = CU_STREAM_NON_BLOCKING) {
  CUstream stream = nullptr;
  REQUIRE(sim().cu.stream_create_with_priority(&stream, flags, 0) == CUDA_SUCCESS);
  return stream;
}

inline CUevent make_event(unsigned flags = CU_EVENT_DEFAULT) {
  CUevent event = nullptr;
  REQUIRE(sim().cu.event_create(&event, flags) == CUDA_SUCCESS);
  return event;
}

}  // namespace sim_fixture
