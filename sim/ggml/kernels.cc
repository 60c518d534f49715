#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {

std::vector<KernelEntry> kernels() {
  std::vector<KernelEntry> all;
  for (const std::vector<KernelEntry>& family :
       {norm_kernels(), mul_mat_vec_kernels(), rope_kernels(), rows_kernels(), copy_kernels(), softmax_kernels(),
        binary_kernels(), unary_kernels(), matmul_kernels()}) {
    all.insert(all.end(), family.begin(), family.end());
  }
  return all;
}

GpubrokerSimKernel find_kernel(std::string_view mangled_name) {
  for (const KernelEntry& kernel : kernels())
    if (mangled_name == kernel.mangled_name) return kernel.run;
  return nullptr;
}

}  // namespace gpubroker::sim::ggml
