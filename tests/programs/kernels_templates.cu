// A second translation unit of the kernel program (its own fatbin and registration): function
// templates instantiated for two types, and a kernel in a namespace, all under C++ mangled names.
#include <cuda_runtime.h>

template <typename T>
__global__ void scale(T* data, T factor, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] *= factor;
}

namespace ops {
__global__ void fill(int* out, int value, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value + i;
}
}  // namespace ops

void launch_scale(float* data, float factor, int n, cudaStream_t stream) {
  scale<<<(n + 255) / 256, 256, 0, stream>>>(data, factor, n);
}

void launch_scale(int* data, int factor, int n, cudaStream_t stream) {
  scale<<<(n + 255) / 256, 256, 0, stream>>>(data, factor, n);
}

void launch_fill(int* out, int value, int n, cudaStream_t stream) {
  ops::fill<<<(n + 127) / 128, 128, 0, stream>>>(out, value, n);
}
