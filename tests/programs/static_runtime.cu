// A program built as nvcc builds by default, with the CUDA runtime linked in statically: the
// runtime inside it asks libcuda.so.1 for NVIDIA's private export tables. Against gpubroker's
// libcuda it must say so and see no device, not hang or crash; exits 0 when it saw
// cudaErrorNoDevice.
#include <cstdio>

#include <cuda_runtime.h>

int main() {
  int count = -1;
  const cudaError_t e = cudaGetDeviceCount(&count);
  std::printf("cudaGetDeviceCount: %d (%s)\n", static_cast<int>(e), cudaGetErrorString(e));
  return e == cudaErrorNoDevice ? 0 : 1;
}
