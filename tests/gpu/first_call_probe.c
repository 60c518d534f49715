// Where a first call's time goes, for tests/gpu/all.sh: a C program (no C++ runtime loaded
// before) that dlopens libcudart.so.13 — the shim or NVIDIA's, whichever LD_LIBRARY_PATH finds —
// and times the dlopen, the first cudaGetDeviceCount (for the shim: connect and handshake; for
// NVIDIA's: driver initialization), the first cudaMalloc (for NVIDIA's: context creation) and a
// second one. Prints one line; exits 1 when a step fails.
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void) {
  const double t0 = now_ms();
  void* runtime = dlopen("libcudart.so.13", RTLD_NOW | RTLD_GLOBAL);
  if (runtime == NULL) {
    printf("dlopen: %s\n", dlerror());
    return 1;
  }
  const double t1 = now_ms();
  int (*device_count)(int*) = (int (*)(int*))dlsym(runtime, "cudaGetDeviceCount");
  int (*malloc_device)(void**, size_t) = (int (*)(void**, size_t))dlsym(runtime, "cudaMalloc");
  if (device_count == NULL || malloc_device == NULL) {
    printf("dlsym: %s\n", dlerror());
    return 1;
  }
  int devices = 0;
  void* first = NULL;
  void* second = NULL;
  if (device_count(&devices) != 0 || devices < 1) return printf("cudaGetDeviceCount failed\n"), 1;
  const double t2 = now_ms();
  if (malloc_device(&first, 1 << 20) != 0) return printf("cudaMalloc failed\n"), 1;
  const double t3 = now_ms();
  if (malloc_device(&second, 1 << 20) != 0) return printf("cudaMalloc failed\n"), 1;
  const double t4 = now_ms();
  printf("dlopen %.3f ms, first cudaGetDeviceCount %.3f ms, first cudaMalloc %.3f ms, second %.3f ms\n", t1 - t0,
         t2 - t1, t3 - t2, t4 - t3);
  return 0;
}
