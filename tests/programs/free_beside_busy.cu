// cudaFree waits for the freeing program's own work, never for another program's. Two processes
// share one broker: the holder keeps a kernel running until it is told to stop, and the freer
// allocates, uses and frees memory meanwhile. A broker whose cudaFree waited for all the work of
// the shared context would keep the freer waiting for a kernel that ends only after the freer has
// finished: the freer would never finish (a 60 s alarm then fails the test, naming the cause, and
// releases the holder so that the broker stops).
//
// Built with nvcc -cudart shared; on the sim, tests/programs/kernels_plugin.cc runs hold_until_set.
#include <cuda_runtime.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" __global__ void hold_until_set(const volatile int* flag) {
  while (*flag == 0) {
  }
}

namespace {

pid_t holder_pid = 0;
int release_holder = -1;  // the write end of the holder's pipe

#define OK(call)                                                                       \
  do {                                                                                 \
    const cudaError_t status_ = (call);                                                \
    if (status_ != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(status_));            \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

// Keeps a kernel running on its stream until a byte arrives on `go`; says "H" on `ready` once the
// kernel is queued and not finished.
int hold(int go, int ready) {
  cudaStream_t busy = nullptr, side = nullptr;
  OK(cudaStreamCreateWithFlags(&busy, cudaStreamNonBlocking));
  OK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  int* flag = nullptr;
  OK(cudaMalloc(&flag, sizeof(int)));
  OK(cudaMemset(flag, 0, sizeof(int)));
  hold_until_set<<<1, 1, 0, busy>>>(flag);
  OK(cudaGetLastError());
  if (cudaStreamQuery(busy) != cudaErrorNotReady) {
    std::fprintf(stderr, "holder: the kernel finished before its flag was set\n");
    return 1;
  }
  if (write(ready, "H", 1) != 1) return 1;
  char byte = 0;
  if (read(go, &byte, 1) != 1) return 1;
  const int one = 1;
  OK(cudaMemcpyAsync(flag, &one, sizeof one, cudaMemcpyHostToDevice, side));
  OK(cudaStreamSynchronize(side));
  OK(cudaStreamSynchronize(busy));
  OK(cudaFree(flag));
  return 0;
}

void on_alarm(int) {
  static const char message[] =
      "FAIL: the freer's calls did not return within 60 s while another process's kernel ran "
      "(cudaFree waited for the other process's work)\n";
  (void)!write(2, message, sizeof message - 1);
  (void)!write(release_holder, "R", 1);  // its kernel ends, and the broker can stop cleanly
  _exit(1);
}

}  // namespace

int main() {
  int to_holder[2], from_holder[2];
  if (pipe(to_holder) != 0 || pipe(from_holder) != 0) return 1;
  holder_pid = fork();  // before any CUDA call: each process makes its own session
  if (holder_pid < 0) return 1;
  if (holder_pid == 0) _exit(hold(to_holder[0], from_holder[1]));

  release_holder = to_holder[1];
  signal(SIGALRM, on_alarm);
  alarm(60);  // a deadline for a hang, not a figure
  char byte = 0;
  if (read(from_holder[0], &byte, 1) != 1 || byte != 'H') {
    std::fprintf(stderr, "FAIL: the holder did not start its kernel\n");
    return 1;
  }

  // The freer: allocations of several sizes, each written, read back and freed, and the free
  // memory the device reports, while the holder's kernel runs.
  std::size_t free_before = 0, total = 0;
  OK(cudaMemGetInfo(&free_before, &total));
  for (int i = 0; i < 16; ++i) {
    const std::size_t bytes = std::size_t{1} << (12 + i % 8);
    void* data = nullptr;
    OK(cudaMalloc(&data, bytes));
    OK(cudaMemset(data, i, bytes));
    std::vector<unsigned char> back(bytes);
    OK(cudaMemcpy(back.data(), data, bytes, cudaMemcpyDeviceToHost));
    for (unsigned char b : back) {
      if (b != static_cast<unsigned char>(i)) {
        std::fprintf(stderr, "FAIL: allocation %d read back %d\n", i, b);
        return 1;
      }
    }
    OK(cudaFree(data));
  }
  std::size_t free_after = 0;
  OK(cudaMemGetInfo(&free_after, &total));
  if (free_after != free_before) {
    std::fprintf(stderr, "FAIL: %zu bytes free after the frees, %zu before\n", free_after, free_before);
    return 1;
  }
  std::printf("16 allocations made, used and freed while another process's kernel ran\n");
  alarm(0);

  if (write(to_holder[1], "R", 1) != 1) return 1;
  int status = 0;
  if (waitpid(holder_pid, &status, 0) != holder_pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "FAIL: the holder ended with status %d\n", status);
    return 1;
  }
  std::printf("the holder's kernel ended once released\n");
  return 0;
}
