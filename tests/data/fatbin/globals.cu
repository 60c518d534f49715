// A module with __device__ variables: it has writable globals (.nv.global, .nv.global.init).
__device__ int counter;
__device__ float table[16] = {1.0f};

__global__ void count_up(int* out) {
  out[0] = atomicAdd(&counter, 1) + static_cast<int>(table[threadIdx.x % 16]);
}
