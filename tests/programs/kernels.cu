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
    vector_add<<<(n + 255) / 256, 256, 0, s>>>(da, db, out, n);
    CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess);
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

  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
