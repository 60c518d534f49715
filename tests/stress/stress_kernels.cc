// The sim's host implementation of the kernel stress_client launches: scale_by<float> of
// tests/data/fatbin/kernels.cu (`if (threadIdx.x < n) data[threadIdx.x] *= factor;`). It runs in
// the broker's process: like every sim kernel it touches only what the launch may reach, and
// faults (700) as a GPU's kernel does for anything else, such as another context's memory.
#include <cstdint>

#include "gpubroker/sim/kernel_plugin.h"

namespace {

int scale_by_float(const GpubrokerSimLaunch* launch) {
  auto* data = gpubroker_sim_arg<float*>(launch, 0);
  const auto factor = gpubroker_sim_arg<float>(launch, 1);
  const auto n = gpubroker_sim_arg<int>(launch, 2);
  const long count = n < static_cast<int>(launch->block.x) ? n : static_cast<long>(launch->block.x);
  if (count <= 0) return 0;
  if (!launch->memory_accessible(data, static_cast<std::uint64_t>(count) * sizeof(float), 1)) return 700;
  for (long i = 0; i < count; ++i) data[i] *= factor;
  return 0;
}

}  // namespace

extern "C" void gpubroker_sim_plugin_init(GpubrokerSimRegisterKernel register_kernel) {
  register_kernel("_Z8scale_byIfEvPT_S0_i", scale_by_float);
}
