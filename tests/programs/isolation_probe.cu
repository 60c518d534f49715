// Whether one user's kernel can reach another user's device memory through the broker.
//
//   isolation_probe owner          allocates a buffer, fills it with a secret, prints its device
//                                  address, and once a line arrives on stdin checks that the
//                                  buffer still holds the secret and that its own kernels run
//   isolation_probe probe ADDRESS fault|read
//                                  points a kernel at ADDRESS (the owner's buffer): "fault" expects
//                                  the launch to fail with an illegal address and nothing read
//                                  (contexts per user), "read" expects the secret (one shared
//                                  context); either way a copy naming ADDRESS is refused
//
// Built with nvcc -cudart shared; on the sim, tests/programs/kernels_plugin.cc runs copy_words and
// checks its ranges as a GPU's page tables would. tests/programs/isolation_test.sh drives it.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" __global__ void copy_words(int* destination, const int* source, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) destination[i] = source[i];
}

namespace {

constexpr int kWords = 1024;
constexpr unsigned char kSecret = 0x5a;

bool holds_secret(const std::vector<int>& words) {
  std::vector<int> secret(words.size());
  std::memset(secret.data(), kSecret, secret.size() * sizeof(int));
  return words == secret;
}

int fail(const char* what, cudaError_t status) {
  std::printf("FAIL: %s: %s\n", what, cudaGetErrorName(status));
  return 1;
}

int owner() {
  int* buffer = nullptr;
  if (cudaError_t e = cudaMalloc(&buffer, kWords * sizeof(int)); e != cudaSuccess) return fail("cudaMalloc", e);
  if (cudaError_t e = cudaMemset(buffer, kSecret, kWords * sizeof(int)); e != cudaSuccess) return fail("cudaMemset", e);
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return fail("cudaDeviceSynchronize", e);
  std::printf("%p\n", static_cast<void*>(buffer));
  std::fflush(stdout);
  char line[16];
  if (std::fgets(line, sizeof line, stdin) == nullptr) return 1;
  std::vector<int> back(kWords);
  if (cudaError_t e = cudaMemcpy(back.data(), buffer, kWords * sizeof(int), cudaMemcpyDeviceToHost); e != cudaSuccess)
    return fail("the owner's read-back", e);
  if (!holds_secret(back)) return std::printf("FAIL: the owner's buffer changed\n"), 1;
  int* copy = nullptr;
  if (cudaError_t e = cudaMalloc(&copy, kWords * sizeof(int)); e != cudaSuccess) return fail("cudaMalloc", e);
  copy_words<<<4, 256>>>(copy, buffer, kWords);
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return fail("the owner's own kernel", e);
  if (cudaError_t e = cudaMemcpy(back.data(), copy, kWords * sizeof(int), cudaMemcpyDeviceToHost); e != cudaSuccess)
    return fail("the owner's copy", e);
  if (!holds_secret(back)) return std::printf("FAIL: the owner's kernel copied something else\n"), 1;
  std::printf("owner: the secret is intact and the owner's kernels run\n");
  return 0;
}

int probe(const char* address_text, const std::string& expect) {
  int* theirs = reinterpret_cast<int*>(std::strtoull(address_text, nullptr, 16));
  std::vector<int> back(kWords, 0);
  if (cudaMemcpy(back.data(), theirs, kWords * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess)
    return std::printf("FAIL: a copy from another session's buffer was served\n"), 1;
  (void)cudaGetLastError();
  int* mine = nullptr;
  if (cudaError_t e = cudaMalloc(&mine, kWords * sizeof(int)); e != cudaSuccess) return fail("cudaMalloc", e);
  if (cudaError_t e = cudaMemset(mine, 0, kWords * sizeof(int)); e != cudaSuccess) return fail("cudaMemset", e);
  copy_words<<<4, 256>>>(mine, theirs, kWords);
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) return fail("the launch", launched);
  const cudaError_t ran = cudaDeviceSynchronize();
  if (expect == "fault") {
    if (ran != cudaErrorIllegalAddress) {
      // Say what the kernel did: read the secret (a breach) or left the buffer as it was.
      const bool read = cudaMemcpy(back.data(), mine, kWords * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess &&
                        holds_secret(back);
      std::printf("the prober's buffer afterwards %s\n", read ? "HOLDS THE SECRET" : "does not hold the secret");
      return fail("a kernel reading another user's buffer (expected a fault)", ran);
    }
    std::printf("probe: the kernel faulted (%s) in the prober's own context\n", cudaGetErrorName(ran));
    return 0;
  }
  if (ran != cudaSuccess) return fail("a kernel in the shared context", ran);
  if (cudaError_t e = cudaMemcpy(back.data(), mine, kWords * sizeof(int), cudaMemcpyDeviceToHost); e != cudaSuccess)
    return fail("the prober's read-back", e);
  if (!holds_secret(back)) return std::printf("FAIL: expected the shared context to let the kernel read it\n"), 1;
  std::printf("probe: one shared context: the kernel read the other session's secret\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "owner") return owner();
  if (argc == 4 && std::string(argv[1]) == "probe") return probe(argv[2], argv[3]);
  std::fprintf(stderr, "usage: isolation_probe owner | probe ADDRESS fault|read\n");
  return 2;
}
