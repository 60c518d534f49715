// A kernel plugin for the sim driver's tests: host implementations of tests/sim/sim_kernels.cu,
// registered through gpubroker_sim_plugin_init (gpubroker/sim/kernel_plugin.h).
#include <algorithm>
#include <cstdint>

#include "gpubroker/sim/kernel_plugin.h"

namespace {

struct Affine {
  float scale;
  double offset;
};

std::uint64_t threads(const GpubrokerSimLaunch* launch) {
  return std::uint64_t{launch->grid.x} * launch->grid.y * launch->grid.z * launch->block.x * launch->block.y *
         launch->block.z;
}

constexpr int kIllegalAddress = 700;

// As the plugin contract asks: every range checked before it is touched.
int vector_add(const GpubrokerSimLaunch* launch) {
  const auto* a = gpubroker_sim_arg<const float*>(launch, 0);
  const auto* b = gpubroker_sim_arg<const float*>(launch, 1);
  auto* out = gpubroker_sim_arg<float*>(launch, 2);
  const int n = gpubroker_sim_arg<int>(launch, 3);
  const std::uint64_t bytes = std::min<std::uint64_t>(threads(launch), n > 0 ? n : 0) * sizeof(float);
  if (!launch->memory_accessible(a, bytes, 0) || !launch->memory_accessible(b, bytes, 0) ||
      !launch->memory_accessible(out, bytes, 1)) {
    return kIllegalAddress;
  }
  for (std::uint64_t i = 0; i < threads(launch) && i < static_cast<std::uint64_t>(n); ++i) out[i] = a[i] + b[i];
  return 0;
}

int fill(const GpubrokerSimLaunch* launch) {
  auto* out = gpubroker_sim_arg<float*>(launch, 0);
  const float value = gpubroker_sim_arg<float>(launch, 1);
  const int n = gpubroker_sim_arg<int>(launch, 2);
  for (std::uint64_t i = 0; i < threads(launch) && i < static_cast<std::uint64_t>(n); ++i) out[i] = value;
  return 0;
}

int affine(const GpubrokerSimLaunch* launch) {
  auto* data = gpubroker_sim_arg<float*>(launch, 0);
  const auto transform = gpubroker_sim_arg<Affine>(launch, 1);
  const int n = gpubroker_sim_arg<int>(launch, 2);
  for (std::uint64_t i = 0; i < threads(launch) && i < static_cast<std::uint64_t>(n); ++i)
    data[i] = data[i] * transform.scale + static_cast<float>(transform.offset);
  return 0;
}

int fail_with(const GpubrokerSimLaunch* launch) { return gpubroker_sim_arg<int>(launch, 0); }

}  // namespace

extern "C" __attribute__((visibility("default"))) void gpubroker_sim_plugin_init(
    GpubrokerSimRegisterKernel register_kernel) {
  register_kernel("_Z10vector_addPKfS0_Pfi", vector_add);
  register_kernel("_Z4fillPffi", fill);
  register_kernel("_Z6affinePf6Affinei", affine);
  register_kernel("_Z9fail_withi", fail_with);
}
