// A CUDA program that keeps a broker busy for a while: it holds device and pinned memory and
// copies both ways in a loop, so that monitors see a session with memory, calls and traffic.
//   busy_client [SECONDS] [MIB]
// Prints the CUDA runtime library it is bound to, the device it got (the broker's device: through
// the shim, the sim's name) and, once its memory is held, "holding"; exits 0 when every copy came
// back intact. SIGUSR1 ends the copy loop early, as if SECONDS had passed: a test keeps the client
// busy for as long as its checks take, then stops it.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static volatile sig_atomic_t g_stop = 0;  // set by the SIGUSR1 handler, read by the copy loop

static bool check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return true;
  std::printf("FAILED: %s: %s\n", what, cudaGetErrorString(status));
  return false;
}

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  struct sigaction stop {};
  stop.sa_handler = [](int) { g_stop = 1; };
  stop.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &stop, nullptr);
  const size_t bytes = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 64) << 20;
  Dl_info runtime{};
  if (dladdr(reinterpret_cast<void*>(&cudaDeviceSynchronize), &runtime) != 0 && runtime.dli_fname != nullptr) {
    std::printf("runtime: %s\n", runtime.dli_fname);
    std::fflush(stdout);
  }
  cudaDeviceProp prop{};
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  std::printf("device: %s\n", prop.name);
  void* device = nullptr;
  void* pinned = nullptr;
  if (!check(cudaMalloc(&device, bytes), "cudaMalloc")) return 1;
  if (!check(cudaMallocHost(&pinned, 1 << 20), "cudaMallocHost")) return 1;
  std::vector<unsigned char> out(1 << 20), back(1 << 20);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<unsigned char>(i * 7 + 1);
  std::printf("holding %zu bytes\n", bytes);
  std::fflush(stdout);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  unsigned long rounds = 0;
  while (std::chrono::steady_clock::now() < end && g_stop == 0) {
    if (!check(cudaMemcpy(device, out.data(), out.size(), cudaMemcpyHostToDevice), "cudaMemcpy H2D")) return 1;
    if (!check(cudaMemcpy(pinned, device, out.size(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H pinned")) return 1;
    if (!check(cudaMemcpy(back.data(), pinned, back.size(), cudaMemcpyHostToHost), "cudaMemcpy H2H")) return 1;
    if (std::memcmp(out.data(), back.data(), out.size()) != 0) {
      std::printf("FAILED: data came back changed\n");
      return 1;
    }
    ++rounds;
  }
  check(cudaFreeHost(pinned), "cudaFreeHost");
  check(cudaFree(device), "cudaFree");
  std::printf("done: %lu rounds\n", rounds);
  return 0;
}
