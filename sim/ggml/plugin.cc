// libgpubroker-sim-ggml.so: the ggml kernels (kernels.h) as a sim kernel plugin. The sim dlopens
// it during its first cuInit (a sim broker by default; gpu-broker --sim-kernels) and calls this
// once, on that thread.
#include "gpubroker/sim/kernel_plugin.h"
#include "sim/ggml/kernels.h"

extern "C" __attribute__((visibility("default"))) void gpubroker_sim_plugin_init(
    GpubrokerSimRegisterKernel register_kernel) {
  for (const gpubroker::sim::ggml::KernelEntry& kernel : gpubroker::sim::ggml::kernels())
    register_kernel(kernel.mangled_name.c_str(), kernel.run);
}

static_assert(std::is_same_v<decltype(&gpubroker_sim_plugin_init), GpubrokerSimPluginInit>);
