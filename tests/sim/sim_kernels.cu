// Kernels for the sim driver's tests (tests/sim/sim_test.cc). The device code never runs: the sim
// runs the host implementations in sim_test_plugin.cc, registered under these mangled names.
struct Affine {
  float scale;
  double offset;  // 8-byte aligned: the struct is at offset 8 of the parameter block
};

__global__ void vector_add(const float* a, const float* b, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void fill(float* out, float value, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

__global__ void affine(float* data, Affine transform, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] = data[i] * transform.scale + static_cast<float>(transform.offset);
}

__global__ void fail_with(int code) {
  if (code != 0) __trap();
}

__global__ void never_implemented(int* out) { out[threadIdx.x] = 1; }

__device__ int hits;
__device__ float table[4] = {1.0f, 2.0f, 3.0f, 4.0f};

__global__ void read_table(float* out) { out[threadIdx.x] = table[threadIdx.x % 4] + atomicAdd(&hits, 1); }
