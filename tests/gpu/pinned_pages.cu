// Native pinned bandwidth by the kind of pinned memory, for tests/gpu/bench.sh: cudaMallocHost
// (what the native runs of bench_native use) against a MAP_SHARED memfd mapping registered with
// cudaHostRegister (what the broker does with a session's host arena), with and without
// MADV_HUGEPAGE. Prints one JSON line: GB/s of a 256 MiB copy each way, medians of 5.
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "check.h"


constexpr size_t kBytes = 256ull << 20;

static double gbps(void* to, const void* from, cudaMemcpyKind kind) {
  std::vector<double> runs;
  OK(cudaMemcpy(to, from, kBytes, kind));  // warm-up
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    OK(cudaMemcpy(to, from, kBytes, kind));
    runs.push_back(kBytes / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

static void* shared_mapping(bool huge) {
  const int fd = static_cast<int>(syscall(SYS_memfd_create, "pinned-pages", 0));
  if (fd < 0 || ftruncate(fd, kBytes) != 0) std::exit(1);
  void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) std::exit(1);
  if (huge) madvise(p, kBytes, MADV_HUGEPAGE);
  std::memset(p, 1, kBytes);
  close(fd);
  return p;
}

int main() {
  void* device = nullptr;
  OK(cudaMalloc(&device, kBytes));
  void* allocated = nullptr;
  OK(cudaMallocHost(&allocated, kBytes));
  std::memset(allocated, 1, kBytes);
  void* shared = shared_mapping(false);
  OK(cudaHostRegister(shared, kBytes, cudaHostRegisterPortable));
  void* huge = shared_mapping(true);
  OK(cudaHostRegister(huge, kBytes, cudaHostRegisterPortable));
  std::printf("{\"mallochost_h2d\": %.4g, \"mallochost_d2h\": %.4g, \"registered_memfd_h2d\": %.4g, "
              "\"registered_memfd_d2h\": %.4g, \"registered_memfd_hugepage_h2d\": %.4g, \"registered_memfd_hugepage_d2h\": %.4g}\n",
              gbps(device, allocated, cudaMemcpyHostToDevice), gbps(allocated, device, cudaMemcpyDeviceToHost),
              gbps(device, shared, cudaMemcpyHostToDevice), gbps(shared, device, cudaMemcpyDeviceToHost),
              gbps(device, huge, cudaMemcpyHostToDevice), gbps(huge, device, cudaMemcpyDeviceToHost));
  return 0;
}
