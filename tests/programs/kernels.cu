// Kernel launches through the broker: a CUDA program built by nvcc (13: __cudaLaunchKernel),
// run against the shim and a sim broker whose kernels are the host implementations in
// kernels_plugin.cc. Checks every result; exits 0 only when all hold.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

struct Affine {  // a 24-byte struct parameter
  double scale;
  double offset;
  int repeat;
};

struct Table {  // a parameter block past 4352 bytes: it travels through staging
  float values[1200];
};

extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

extern "C" __global__ void affine(Affine f, float* data, int n, float bias) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] = static_cast<float>(data[i] * f.scale + f.offset * f.repeat) + bias;
}

extern "C" __global__ void lookup(Table table, const int* indices, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = table.values[indices[i] % 1200];
}

__device__ float scale_factor = 2.5f;                         // initialized device data
__constant__ float coefficients[4] = {1.0f, 2.0f, 3.0f, 4.0f};  // constant memory
__device__ int scratch[64];                                    // zero-initialized

// kernels_templates.cu, another translation unit.
void launch_scale(float* data, float factor, int n, cudaStream_t stream);
void launch_scale(int* data, int factor, int n, cudaStream_t stream);
void launch_fill(int* out, int value, int n, cudaStream_t stream);

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

int main() {
  const int n = 10000;
  std::vector<float> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) a[i] = i * 0.5f, b[i] = 1000.0f - i;
  float *da, *db, *dc;
  int* di;
  CHECK(cudaMalloc(&da, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMalloc(&db, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMalloc(&dc, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMalloc(&di, n * sizeof(int)) == cudaSuccess);
  cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice);

  vector_add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
  CHECK(cudaGetLastError() == cudaSuccess);
  cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += c[i] != a[i] + b[i];
  CHECK(wrong == 0);

  cudaStream_t stream;
  cudaStreamCreate(&stream);
  affine<<<(n + 127) / 128, 128, 0, stream>>>(Affine{2.0, 0.25, 4}, dc, n, -1.0f);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  std::vector<float> d(n);
  cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
  wrong = 0;
  for (int i = 0; i < n; ++i) wrong += d[i] != static_cast<float>(c[i] * 2.0 + 0.25 * 4) - 1.0f;
  CHECK(wrong == 0);

  Table table;
  for (int i = 0; i < 1200; ++i) table.values[i] = i * 3.0f;
  std::vector<int> indices(n);
  for (int i = 0; i < n; ++i) indices[i] = i * 7;
  cudaMemcpy(di, indices.data(), n * sizeof(int), cudaMemcpyHostToDevice);
  lookup<<<(n + 255) / 256, 256>>>(table, di, dc, n);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
  wrong = 0;
  for (int i = 0; i < n; ++i) wrong += d[i] != table.values[indices[i] % 1200];
  CHECK(wrong == 0);

  // CUDA graphs, as ggml uses them per token: capture records without running, a launch of the
  // instantiated graph runs, and an exec update with new parameters takes effect.
  {
    float* out;
    CHECK(cudaMalloc(&out, n * sizeof(float)) == cudaSuccess);
    CHECK(cudaMemset(out, 0, n * sizeof(float)) == cudaSuccess);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaGraph_t graph, graph2;
    cudaGraphExec_t exec;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    cudaStreamCaptureStatus status;
    CHECK(cudaStreamIsCapturing(s, &status) == cudaSuccess && status == cudaStreamCaptureStatusActive);
    unsigned long long capture_id = 0;
    CHECK(cudaStreamGetCaptureInfo(s, &status, &capture_id) == cudaSuccess);
    CHECK(status == cudaStreamCaptureStatusActive && capture_id != 0);
    vector_add<<<(n + 255) / 256, 256, 0, s>>>(da, db, out, n);
    CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess);
    CHECK(cudaStreamGetCaptureInfo(s, &status) == cudaSuccess && status == cudaStreamCaptureStatusNone);
    std::vector<float> seen(n);
    cudaMemcpy(seen.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(seen[5] == 0.0f);  // recorded, not run
    CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    cudaMemcpy(seen.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(seen[5] == a[5] + b[5] && seen[n - 1] == a[n - 1] + b[n - 1]);
    // The same kernel with other arguments: b + b.
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    unsigned long long second_id = 0;
    CHECK(cudaStreamGetCaptureInfo(s, &status, &second_id) == cudaSuccess && second_id != capture_id);
    vector_add<<<(n + 255) / 256, 256, 0, s>>>(db, db, out, n);
    CHECK(cudaStreamEndCapture(s, &graph2) == cudaSuccess);
    cudaGraphExecUpdateResultInfo info;
    CHECK(cudaGraphExecUpdate(exec, graph2, &info) == cudaSuccess && info.result == cudaGraphExecUpdateSuccess);
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    cudaMemcpy(seen.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(seen[7] == b[7] + b[7]);
    CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
    CHECK(cudaGraphDestroy(graph) == cudaSuccess);
    CHECK(cudaGraphDestroy(graph2) == cudaSuccess);
    CHECK(cudaGraphDestroy(graph2) == cudaErrorInvalidResourceHandle);
  }

  // Templates and a namespaced kernel from another translation unit (its own fatbin).
  {
    std::vector<int> ints(n);
    launch_fill(di, 7, n, stream);
    launch_scale(di, 3, n, stream);
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    cudaMemcpy(ints.data(), di, n * sizeof(int), cudaMemcpyDeviceToHost);
    CHECK(ints[0] == 21 && ints[100] == 3 * 107 && ints[n - 1] == 3 * (7 + n - 1));
    cudaMemcpy(dc, a.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    launch_scale(dc, 0.5f, n, nullptr);
    cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(d[10] == a[10] * 0.5f && d[n - 1] == a[n - 1] * 0.5f);
  }

  // Device variables: sizes, initial values, copies to and from them (with offsets), their
  // addresses as plain device memory, and clear errors for what is not one or out of range.
  {
    size_t size = 0;
    CHECK(cudaGetSymbolSize(&size, scale_factor) == cudaSuccess && size == sizeof(float));
    CHECK(cudaGetSymbolSize(&size, coefficients) == cudaSuccess && size == 4 * sizeof(float));
    CHECK(cudaGetSymbolSize(&size, scratch) == cudaSuccess && size == 64 * sizeof(int));
    float value = 0;
    CHECK(cudaMemcpyFromSymbol(&value, scale_factor, sizeof(value)) == cudaSuccess && value == 2.5f);
    float coefficients_seen[4] = {};
    CHECK(cudaMemcpyFromSymbol(coefficients_seen, coefficients, sizeof(coefficients_seen)) == cudaSuccess);
    CHECK(coefficients_seen[0] == 1.0f && coefficients_seen[3] == 4.0f);
    const float nine = 9.0f;
    CHECK(cudaMemcpyToSymbol(coefficients, &nine, sizeof(nine), 2 * sizeof(float)) == cudaSuccess);
    CHECK(cudaMemcpyFromSymbol(coefficients_seen, coefficients, sizeof(coefficients_seen)) == cudaSuccess);
    CHECK(coefficients_seen[1] == 2.0f && coefficients_seen[2] == 9.0f && coefficients_seen[3] == 4.0f);
    std::vector<int> ints(64);
    for (int i = 0; i < 64; ++i) ints[i] = i * i;
    CHECK(cudaMemcpyToSymbolAsync(scratch, ints.data(), 64 * sizeof(int), 0, cudaMemcpyHostToDevice, stream) ==
          cudaSuccess);
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    int* scratch_address = nullptr;
    CHECK(cudaGetSymbolAddress(reinterpret_cast<void**>(&scratch_address), scratch) == cudaSuccess);
    std::vector<int> ints_seen(64);
    CHECK(cudaMemcpy(ints_seen.data(), scratch_address, 64 * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(ints_seen == ints);
    CHECK(cudaMemcpy(ints_seen.data(), scratch_address + 60, 8 * sizeof(int), cudaMemcpyDeviceToHost) ==
          cudaErrorInvalidValue);  // past the variable's end: not the program's memory
    CHECK(cudaMemcpyFromSymbol(coefficients_seen, coefficients, 5 * sizeof(float)) == cudaErrorInvalidValue);
    static float not_a_symbol;
    CHECK(cudaGetSymbolSize(&size, &not_a_symbol) == cudaErrorInvalidSymbol);
    cudaGetLastError();
  }

  // Function attributes, the dynamic shared memory limit, occupancy.
  {
    cudaFuncAttributes attributes;
    CHECK(cudaFuncGetAttributes(&attributes, vector_add) == cudaSuccess);
    std::printf("vector_add: %d threads/block max, %d registers, binary %d, ptx %d, %zu B shared\n",
                attributes.maxThreadsPerBlock, attributes.numRegs, attributes.binaryVersion, attributes.ptxVersion,
                attributes.sharedSizeBytes);
    CHECK(attributes.maxThreadsPerBlock == 1024);
    CHECK(attributes.binaryVersion == 90);
    CHECK(attributes.maxDynamicSharedSizeBytes == 48 * 1024);
    CHECK(cudaFuncSetAttribute(affine, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) == cudaSuccess);
    CHECK(cudaFuncGetAttributes(&attributes, affine) == cudaSuccess);
    CHECK(attributes.maxDynamicSharedSizeBytes == 100 * 1024);
    CHECK(cudaFuncSetAttribute(affine, cudaFuncAttributeMaxDynamicSharedMemorySize, 1 << 20) == cudaErrorInvalidValue);
    cudaGetLastError();
    CHECK(cudaFuncSetCacheConfig(vector_add, cudaFuncCachePreferShared) == cudaSuccess);
    // With the raised limit, a launch with 100 KiB of dynamic shared memory runs.
    cudaMemcpy(dc, c.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    affine<<<(n + 127) / 128, 128, 100 * 1024, stream>>>(Affine{1.0, 1.0, 1}, dc, n, 0.0f);
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(d[3] == static_cast<float>(c[3] + 1.0));
    int blocks = 0, again = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, vector_add, 256, 0) == cudaSuccess);
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&again, vector_add, 256, 0, 0) == cudaSuccess);
    std::printf("occupancy of vector_add at 256 threads: %d blocks per multiprocessor\n", blocks);
    CHECK(blocks >= 1 && blocks <= 8 && again == blocks);
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, vector_add, 4096, 0) == cudaSuccess && blocks == 0);
  }

  // cudaLaunchKernelExC with programmatic stream serialization (ggml on Hopper), and a
  // cooperative launch: the same results as a plain launch.
  {
    cudaMemset(dc, 0, n * sizeof(float));
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((n + 255) / 256);
    config.blockDim = dim3(256);
    config.stream = stream;
    config.attrs = attribute;
    config.numAttrs = 1;
    CHECK(cudaLaunchKernelEx(&config, vector_add, static_cast<const float*>(da), static_cast<const float*>(db), dc, n) ==
          cudaSuccess);
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(d[11] == a[11] + b[11] && d[n - 1] == a[n - 1] + b[n - 1]);
    cudaMemset(dc, 0, n * sizeof(float));
    void* args[] = {&da, &db, &dc, const_cast<int*>(&n)};
    CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(vector_add), dim3((n + 255) / 256), dim3(256), args, 0,
                                      stream) == cudaSuccess);
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
    CHECK(d[12] == a[12] + b[12]);
    attribute[0].id = cudaLaunchAttributeAccessPolicyWindow;
    CHECK(cudaLaunchKernelEx(&config, vector_add, static_cast<const float*>(da), static_cast<const float*>(db), dc, n) ==
          cudaErrorNotSupported);
    cudaGetLastError();
  }

  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
