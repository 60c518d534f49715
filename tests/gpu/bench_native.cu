// The program tests/gpu/bench.sh runs twice on a GPU host: once against the real libcudart
// (native) and once against the runtime shim and a broker on the real driver (brokered). Built by
// nvcc with -cudart shared, so the same binary serves both; only LD_LIBRARY_PATH differs.
//
// Measured (medians of 5 runs each), printed as one JSON line:
//   launches_per_s     an empty kernel launched 200,000 times on one stream, then a sync
//   pinned_h2d_gbps    cudaMemcpyAsync of 256 MiB from cudaMallocHost memory, then a sync
//   pinned_d2h_gbps    the same, device to host
//   pipeline_per_s     a small end-to-end step, as an inference runner does per token: copy
//                      1 MiB in, a kernel (y = a*x + 1), copy 1 MiB out, stream sync; every
//                      output is checked, and a wrong value fails the program (exit 1)
//   pageable_h2d_4k_us, pageable_d2h_4k_us, pageable_d2h_512k_us
//                      one synchronous cudaMemcpy from or to pageable (malloc) memory, median of
//                      2000: what a runner pays per token for its inputs and its logits
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check.h"


__global__ void empty_kernel() {}

__global__ void scale_add(const float* x, float* y, float a, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + 1.0f;
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  constexpr int kRuns = 5, kLaunches = 200000, kSteps = 2000;
  constexpr size_t kCopyBytes = 256ull << 20;
  constexpr int kElements = (1 << 20) / sizeof(float);
  cudaStream_t stream;
  OK(cudaStreamCreate(&stream));

  std::vector<double> launches, h2d, d2h, pipeline;
  empty_kernel<<<1, 32, 0, stream>>>();  // loads the module
  OK(cudaStreamSynchronize(stream));
  for (int r = 0; r < kRuns; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kLaunches; ++i) empty_kernel<<<1, 32, 0, stream>>>();
    OK(cudaGetLastError());
    OK(cudaStreamSynchronize(stream));
    launches.push_back(kLaunches / seconds_since(t0));
  }

  void* host = nullptr;
  void* device = nullptr;
  OK(cudaMallocHost(&host, kCopyBytes));
  OK(cudaMalloc(&device, kCopyBytes));
  OK(cudaMemset(device, 0, kCopyBytes));
  std::fill_n(static_cast<char*>(host), kCopyBytes, 1);
  OK(cudaMemcpyAsync(device, host, kCopyBytes, cudaMemcpyHostToDevice, stream));  // warm-up
  OK(cudaStreamSynchronize(stream));
  for (int r = 0; r < kRuns; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    OK(cudaMemcpyAsync(device, host, kCopyBytes, cudaMemcpyHostToDevice, stream));
    OK(cudaStreamSynchronize(stream));
    h2d.push_back(kCopyBytes / seconds_since(t0) / 1e9);
    t0 = std::chrono::steady_clock::now();
    OK(cudaMemcpyAsync(host, device, kCopyBytes, cudaMemcpyDeviceToHost, stream));
    OK(cudaStreamSynchronize(stream));
    d2h.push_back(kCopyBytes / seconds_since(t0) / 1e9);
  }

  float* x_host = static_cast<float*>(host);
  float* y_host = x_host + kElements;
  float* x = static_cast<float*>(device);
  float* y = x + kElements;
  for (int i = 0; i < kElements; ++i) x_host[i] = static_cast<float>(i % 1024);
  int wrong = 0;
  for (int r = 0; r < kRuns; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int step = 0; step < kSteps; ++step) {
      const float a = static_cast<float>(step % 7);
      OK(cudaMemcpyAsync(x, x_host, kElements * sizeof(float), cudaMemcpyHostToDevice, stream));
      scale_add<<<(kElements + 255) / 256, 256, 0, stream>>>(x, y, a, kElements);
      OK(cudaMemcpyAsync(y_host, y, kElements * sizeof(float), cudaMemcpyDeviceToHost, stream));
      OK(cudaStreamSynchronize(stream));
      const int probe = (step * 7919) % kElements;  // one element per step, a different one each time
      if (y_host[probe] != a * static_cast<float>(probe % 1024) + 1.0f) ++wrong;
    }
    pipeline.push_back(kSteps / seconds_since(t0));
  }
  for (int i = 0; i < kElements; ++i) {
    if (y_host[i] != static_cast<float>((kSteps - 1) % 7) * static_cast<float>(i % 1024) + 1.0f) ++wrong;
  }
  std::vector<char> pageable(512 << 10, 1);
  auto copy_us = [&](void* to, const void* from, size_t bytes, cudaMemcpyKind kind) {
    std::vector<double> us;
    for (int i = 0; i < 2000; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      OK(cudaMemcpy(to, from, bytes, kind));
      us.push_back(seconds_since(t0) * 1e6);
    }
    return median(us);
  };
  const double h2d_4k = copy_us(device, pageable.data(), 4096, cudaMemcpyHostToDevice);
  const double d2h_4k = copy_us(pageable.data(), device, 4096, cudaMemcpyDeviceToHost);
  const double d2h_512k = copy_us(pageable.data(), device, pageable.size(), cudaMemcpyDeviceToHost);
  OK(cudaFree(device));
  OK(cudaFreeHost(host));
  OK(cudaStreamDestroy(stream));
  if (wrong != 0) {
    std::fprintf(stderr, "bench_native: %d wrong results in the pipeline\n", wrong);
    return 1;
  }
  std::printf("{\"launches_per_s\": %.6g, \"pinned_h2d_gbps\": %.6g, \"pinned_d2h_gbps\": %.6g, \"pipeline_per_s\": %.6g, "
              "\"pageable_h2d_4k_us\": %.4g, \"pageable_d2h_4k_us\": %.4g, \"pageable_d2h_512k_us\": %.4g}\n",
              median(launches), median(h2d), median(d2h), median(pipeline), h2d_4k, d2h_4k, d2h_512k);
  return 0;
}
