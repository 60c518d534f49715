// Ollama's weight loader, reduced: 16 host threads each copy their share of a buffer to the device
// in 128 KiB chunks of pageable memory with cudaMemcpyAsync on cudaStreamPerThread, then
// synchronize; the result is read back and compared. Exits 0 when every byte arrived.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

int main() {
  constexpr size_t kChunk = 128 << 10;
  constexpr int kThreads = 16;
  constexpr size_t kChunksPerThread = 24;
  constexpr size_t kBytes = kChunk * kChunksPerThread * kThreads;
  std::vector<unsigned char> host(kBytes), back(kBytes);
  for (size_t i = 0; i < kBytes; ++i) host[i] = static_cast<unsigned char>((i * 131) ^ (i >> 13));
  unsigned char* device = nullptr;
  if (cudaMalloc(&device, kBytes) != cudaSuccess) return 2;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t c = 0; c < kChunksPerThread; ++c) {
        const size_t offset = (c * kThreads + t) * kChunk;  // interleaved, like tensors of a file
        if (cudaMemcpyAsync(device + offset, host.data() + offset, kChunk, cudaMemcpyHostToDevice,
                            cudaStreamPerThread) != cudaSuccess) {
          ++failures[t];
        }
      }
      if (cudaStreamSynchronize(cudaStreamPerThread) != cudaSuccess) ++failures[t];
    });
  }
  for (auto& t : threads) t.join();
  int failed = 0;
  for (int f : failures) failed += f;
  if (cudaMemcpy(back.data(), device, kBytes, cudaMemcpyDeviceToHost) != cudaSuccess) ++failed;
  const bool same = std::memcmp(back.data(), host.data(), kBytes) == 0;
  std::printf("16 threads x %zu chunks of 128 KiB: %s, %d call failure(s)\n", kChunksPerThread,
              same ? "data intact" : "DATA CORRUPTED", failed);
  cudaFree(device);
  return same && failed == 0 ? 0 : 1;
}
