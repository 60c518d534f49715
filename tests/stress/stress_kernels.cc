// The sim's host implementation of the kernel stress_client launches: scale_by<float> of
// tests/data/fatbin/kernels.cu (`if (threadIdx.x < n) data[threadIdx.x] *= factor;`).
#include "gpubroker/sim/kernel_plugin.h"

namespace {

int scale_by_float(const GpubrokerSimLaunch* launch) {
  auto* data = gpubroker_sim_arg<float*>(launch, 0);
  const auto factor = gpubroker_sim_arg<float>(launch, 1);
  const auto n = gpubroker_sim_arg<int>(launch, 2);
  for (long i = 0; i < static_cast<long>(launch->block.x) && i < n; ++i) data[i] *= factor;
  return 0;
}

}  // namespace

extern "C" void gpubroker_sim_plugin_init(GpubrokerSimRegisterKernel register_kernel) {
  register_kernel("_Z8scale_byIfEvPT_S0_i", scale_by_float);
}
