// A module whose only variable is __constant__: writable from the host (cudaMemcpyToSymbol),
// so it counts as having writable globals.
__constant__ float coefficients[4];

__global__ void apply(float* data) { data[threadIdx.x] *= coefficients[threadIdx.x % 4]; }
