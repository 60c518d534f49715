// The sim driver's kernel plugins: host implementations of device kernels.
//
// libgpubroker-sim.so runs no device code. A cuLaunchKernel of kernel K runs, in stream order on
// that stream's worker thread, the host function registered for K's mangled name (the name
// cuModuleGetFunction was given, as it appears in the image). A launch of a kernel with no host
// implementation fails at the call with CUDA_ERROR_LAUNCH_FAILED and one stderr line naming it.
//
// Plugins are shared libraries listed, colon-separated, in the environment variable
// GPUBROKER_SIM_KERNELS. The sim dlopens each (RTLD_NOW | RTLD_LOCAL) once, during the first
// cuInit, and registers kernels in one of two ways:
//   1. preferred: the plugin exports `gpubroker_sim_plugin_init` (GpubrokerSimPluginInit below);
//      the sim calls it once, right after dlopen, with its registration function. The plugin
//      needs no link dependency on the sim, so it works however the sim itself was loaded.
//   2. the plugin calls the exported gpubroker_sim_register_kernel from a static constructor.
//      This needs the symbol to be visible to the plugin: link the plugin against
//      libgpubroker-sim.so, or load the sim with RTLD_GLOBAL.
// A program that has the sim loaded may also call gpubroker_sim_register_kernel directly (tests).
// A kernel launched on an idle stream may run in the launching thread; one that waits for work of
// another stream (a flag another stream sets) must not, and its plugin lists it in an exported,
// null-terminated array of mangled names:
//   extern "C" const char* const gpubroker_sim_waiting_kernels[] = {"hold_until_set", nullptr};
// Registering a name again replaces the earlier implementation.
//
// Example plugin (C++):
//
//   #include "gpubroker/sim/kernel_plugin.h"
//   // __global__ void fill(float* out, float value, int n)
//   static int fill(const GpubrokerSimLaunch* launch) {
//     auto* out = gpubroker_sim_arg<float*>(launch, 0);
//     auto value = gpubroker_sim_arg<float>(launch, 1);
//     auto n = gpubroker_sim_arg<int>(launch, 2);
//     for (int i = 0; i < n; ++i) out[i] = value;  // device pointers are host addresses
//     return 0;
//   }
//   extern "C" void gpubroker_sim_plugin_init(GpubrokerSimRegisterKernel register_kernel) {
//     register_kernel("_Z4fillPffi", fill);
//   }
//
// Threads: an implementation runs on the worker thread of the launch's stream and may run at the
// same time as implementations on other streams; it must not call back into the driver API.
// Registration functions may be called from any thread.
#pragma once

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
#include <cstring>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GpubrokerSimDim3 {
  unsigned int x;
  unsigned int y;
  unsigned int z;
} GpubrokerSimDim3;

// Where one kernel parameter lies in the packed parameter block (from the module's image).
typedef struct GpubrokerSimParam {
  uint32_t offset;
  uint32_t size;
} GpubrokerSimParam;

// One launch, valid for the duration of the implementation's call only.
typedef struct GpubrokerSimLaunch {
  uint32_t struct_size;     // sizeof(GpubrokerSimLaunch) of the sim; later versions only append
  const char* kernel_name;  // mangled
  GpubrokerSimDim3 grid;
  GpubrokerSimDim3 block;
  uint32_t dynamic_shared_bytes;
  // The parameter block, packed by the kernel's layout, exactly as the device would see it.
  // Pointer parameters hold sim device pointers, which are host addresses.
  const unsigned char* params;
  uint32_t param_bytes;
  const GpubrokerSimParam* param_layout;  // param_count entries, by ordinal
  uint32_t param_count;
  // Appended (present when struct_size covers it): whether the kernel may touch [address, address +
  // bytes), which must lie inside one device allocation, inside contiguous VMM mappings with that
  // access, or inside one registered host range; `write` (non-zero) asks for write access. A
  // kernel's parameters come from a client the broker does not trust, and on the sim a device
  // pointer is an address of the broker's own process: an implementation checks every range it
  // reads or writes before touching it, and fails the launch with 700 (CUDA_ERROR_ILLEGAL_ADDRESS,
  // as a GPU faults) when one is refused. An empty range is accessible. Any thread.
  int (*memory_accessible)(const void* address, uint64_t bytes, int write);
} GpubrokerSimLaunch;

// Whether `launch` carries member `member` (a plugin built against a newer header than the sim's).
#define GPUBROKER_SIM_LAUNCH_HAS(launch, member) \
  ((launch)->struct_size >= offsetof(GpubrokerSimLaunch, member) + sizeof((launch)->member))

// Returns 0 on success, or a CUresult (e.g. 700, CUDA_ERROR_ILLEGAL_ADDRESS) that the launch's
// stream then reports from its next cuStreamSynchronize / cuStreamQuery / cuCtxSynchronize.
typedef int (*GpubrokerSimKernel)(const GpubrokerSimLaunch* launch);

typedef void (*GpubrokerSimRegisterKernel)(const char* mangled_name, GpubrokerSimKernel kernel);

// What a plugin exports as `gpubroker_sim_plugin_init` (optional; see above).
typedef void (*GpubrokerSimPluginInit)(GpubrokerSimRegisterKernel register_kernel);

// Exported by libgpubroker-sim.so. A null name or kernel is ignored.
void gpubroker_sim_register_kernel(const char* mangled_name, GpubrokerSimKernel kernel);

#ifdef __cplusplus
}  // extern "C"

// Parameter `index` of the launch as a T (memcpy, so unaligned blocks are fine). T must be the
// parameter's type; an index past the last parameter or a size mismatch gives T{}.
template <class T>
T gpubroker_sim_arg(const GpubrokerSimLaunch* launch, uint32_t index) {
  T value{};
  if (index < launch->param_count && launch->param_layout[index].size == sizeof(T))
    std::memcpy(&value, launch->params + launch->param_layout[index].offset, sizeof(T));
  return value;
}
#endif
