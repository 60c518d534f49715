// A CUDA program built by nvcc with -cudart shared, run unmodified against the runtime shim and a
// sim broker: a deviceQuery-style dump, copies of every kind through pageable and pinned memory
// with checksums, stream and event ordering, host functions, and error paths. Prints what it checks; exits 0
// only when everything held.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static int failures = 0;

// The length of the function name at the start of a call's text ("cudaFree(p)": 8).
static int name_length(const char* text) { return static_cast<int>(std::strcspn(text, "(")); }

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
      ++failures;                                                        \
    }                                                                    \
  } while (0)
// With GPUBROKER_TEST_ECHO_CALLS set, each call made through OK is printed ("call: NAME") before
// it runs: the call trace test checks the trace against this list.
static const bool echo_calls = std::getenv("GPUBROKER_TEST_ECHO_CALLS") != nullptr;
#define OK(call)                                                            \
  do {                                                                      \
    if (echo_calls) std::printf("call: %.*s\n", name_length(#call), #call); \
    CHECK((call) == cudaSuccess);                                           \
  } while (0)

static unsigned long long checksum(const unsigned char* p, size_t n) {
  unsigned long long h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>((i * 2654435761u + seed) >> 7);
}

struct HostFuncLog {
  unsigned char* seen;
  unsigned char* later;
  int first_byte_seen = -1;
  int order = 0;
  cudaError_t callback_status = cudaErrorUnknown;
  cudaStream_t callback_stream = nullptr;
};

static void on_copied(void* data) {
  auto* log = static_cast<HostFuncLog*>(data);
  log->first_byte_seen = log->seen[0];
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the next copy must still wait
  std::memset(log->later, 0x77, 4096);
  log->order = log->order == 0 ? 1 : -1;
}

static void CUDART_CB on_stream_done(cudaStream_t stream, cudaError_t status, void* data) {
  auto* log = static_cast<HostFuncLog*>(data);
  log->callback_status = status;
  log->callback_stream = stream;
  log->order = log->order == 1 ? 2 : -1;
}

// cuda_profiler_api.h's, which PyPI's CUDA 12 runtime headers lack.
extern "C" cudaError_t cudaProfilerStart();
extern "C" cudaError_t cudaProfilerStop();

int main() {
  int count = -1;
  OK(cudaGetDeviceCount(&count));
  CHECK(count >= 1);
  int driver = 0, runtime = 0;
  OK(cudaDriverGetVersion(&driver));
  OK(cudaRuntimeGetVersion(&runtime));
  std::printf("devices: %d, driver %d, runtime %d\n", count, driver, runtime);
  CHECK(runtime / 1000 == CUDART_VERSION / 1000);

  // The properties land in exactly sizeof(cudaDeviceProp) bytes of this ABI (1032 for 12.x, 1008
  // for 13.0): a canary right behind the struct must survive.
  struct {
    cudaDeviceProp prop;
    unsigned char canary[64];
  } guarded;
  std::memset(&guarded, 0xcd, sizeof(guarded));
  OK(cudaGetDeviceProperties(&guarded.prop, 0));
  for (unsigned char byte : guarded.canary) CHECK(byte == 0xcd);
  const cudaDeviceProp& prop = guarded.prop;
  std::printf("sizeof(cudaDeviceProp) = %zu\n", sizeof(cudaDeviceProp));
  CHECK(sizeof(cudaDeviceProp) == (CUDART_VERSION >= 13000 ? 1008u : 1032u));
  std::printf("device 0: %s, cc %d.%d, %d SMs, %zu MiB, smem/block optin %zu, warp %d, pci %04x:%02x:%02x\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem >> 20,
              prop.sharedMemPerBlockOptin, prop.warpSize, prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
  CHECK(prop.major == 9 && prop.minor == 0);
  CHECK(prop.multiProcessorCount == 132);
  CHECK(prop.sharedMemPerBlockOptin == 232448);
  CHECK(prop.warpSize == 32);
  CHECK(prop.integrated == 0);
  int cooperative = 0;
  OK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, 0));
  CHECK(cooperative == 1);
  char bus[32];
  OK(cudaDeviceGetPCIBusId(bus, sizeof(bus), 0));
  std::printf("pci bus id: %s\n", bus);
  OK(cudaSetDevice(0));
  size_t free_bytes = 0, total_bytes = 0;
  OK(cudaMemGetInfo(&free_bytes, &total_bytes));
  CHECK(total_bytes == prop.totalGlobalMem);

  // Copies of every kind, pageable and pinned, with checksums.
  for (size_t n : {size_t(1), size_t(4096), size_t(1000003), size_t(64) << 20}) {
    std::vector<unsigned char> host(n), back(n);
    fill(host.data(), n, static_cast<unsigned>(n));
    const unsigned long long expected = checksum(host.data(), n);
    unsigned char *d1 = nullptr, *d2 = nullptr, *pinned = nullptr;
    OK(cudaMalloc(&d1, n));
    OK(cudaMalloc(&d2, n));
    OK(cudaMallocHost(&pinned, n));
    CHECK(reinterpret_cast<uintptr_t>(pinned) % 256 == 0);
    OK(cudaMemcpy(d1, host.data(), n, cudaMemcpyHostToDevice));      // pageable H2D
    OK(cudaMemcpy(d2, d1, n, cudaMemcpyDeviceToDevice));             // D2D
    OK(cudaMemcpy(pinned, d2, n, cudaMemcpyDeviceToHost));           // pinned D2H
    CHECK(checksum(pinned, n) == expected);
    fill(pinned, n, 99);
    const unsigned long long expected2 = checksum(pinned, n);
    OK(cudaMemcpy(d1, pinned, n, cudaMemcpyDefault));                // pinned H2D, inferred
    OK(cudaMemcpy(back.data(), d1, n, cudaMemcpyDefault));           // pageable D2H, inferred
    CHECK(checksum(back.data(), n) == expected2);
    OK(cudaFreeHost(pinned));
    OK(cudaFree(d1));
    OK(cudaFree(d2));
  }

  // Streams and events: an async pipeline on two streams, ordered by an event.
  const size_t n = 8 << 20;
  unsigned char *a, *b, *h;
  OK(cudaMalloc(&a, n));
  OK(cudaMalloc(&b, n));
  OK(cudaMallocHost(&h, n));
  fill(h, n, 7);
  const unsigned long long expected = checksum(h, n);
  cudaStream_t s1, s2;
  cudaEvent_t copied, start, stop;
  OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  OK(cudaStreamCreate(&s2));
  OK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
  OK(cudaEventCreate(&start));
  OK(cudaEventCreate(&stop));
  OK(cudaEventRecord(start, s1));
  OK(cudaMemcpyAsync(a, h, n, cudaMemcpyHostToDevice, s1));
  OK(cudaEventRecord(copied, s1));
  OK(cudaStreamWaitEvent(s2, copied, 0));
  OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s2));
  OK(cudaMemsetAsync(a, 0, n, s2));
  OK(cudaMemcpyAsync(h, b, n, cudaMemcpyDeviceToHost, s2));
  OK(cudaEventRecord(stop, s2));
  OK(cudaStreamSynchronize(s2));
  CHECK(checksum(h, n) == expected);
  OK(cudaEventSynchronize(stop));
  float ms = -1;
  OK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(ms >= 0);
  OK(cudaStreamQuery(s1));
  OK(cudaEventQuery(copied));
  std::printf("stream pipeline: %.3f ms\n", ms);

  {
    // Host functions run in stream order: after the work before them, and before the work after
    // them (the copy from `later` must wait until on_copied has written it).
    unsigned char *d = nullptr, *seen = nullptr, *later = nullptr, *result = nullptr;
    OK(cudaMalloc(&d, 4096));
    OK(cudaMallocHost(&seen, 4096));
    OK(cudaMallocHost(&later, 4096));
    OK(cudaMallocHost(&result, 4096));
    std::memset(later, 0x11, 4096);
    HostFuncLog log{seen, later};
    OK(cudaMemsetAsync(d, 0x33, 4096, s1));
    OK(cudaMemcpyAsync(seen, d, 4096, cudaMemcpyDeviceToHost, s1));
    OK(cudaLaunchHostFunc(s1, on_copied, &log));
    OK(cudaMemcpyAsync(d, later, 4096, cudaMemcpyHostToDevice, s1));
    OK(cudaMemcpyAsync(result, d, 4096, cudaMemcpyDeviceToHost, s1));
    OK(cudaStreamAddCallback(s1, on_stream_done, &log, 0));
    OK(cudaStreamSynchronize(s1));
    CHECK(log.first_byte_seen == 0x33);
    CHECK(result[0] == 0x77 && result[4095] == 0x77);
    CHECK(log.order == 2 && log.callback_status == cudaSuccess && log.callback_stream == s1);
    CHECK(cudaStreamAddCallback(s1, on_stream_done, &log, 1) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    OK(cudaFree(d));
    OK(cudaFreeHost(seen));
    OK(cudaFreeHost(later));
    OK(cudaFreeHost(result));
  }
  OK(cudaEventDestroy(copied));
  OK(cudaEventDestroy(start));
  OK(cudaEventDestroy(stop));
  OK(cudaStreamDestroy(s1));
  OK(cudaStreamDestroy(s2));

  // Pitched memory, 2D copies and memsets, pointer attributes, stream-ordered allocation.
  {
    const size_t width = 100, height = 37;
    unsigned char* pitched = nullptr;
    size_t pitch = 0;
    OK(cudaMallocPitch(reinterpret_cast<void**>(&pitched), &pitch, width, height));
    CHECK(pitch >= width && pitch % 256 == 0);
    std::vector<unsigned char> image(width * height), out(width * height, 0);
    fill(image.data(), image.size(), 5);
    OK(cudaMemset2D(pitched, pitch, 0xff, width, height));
    OK(cudaMemcpy2D(pitched, pitch, image.data(), width, width, height, cudaMemcpyHostToDevice));
    OK(cudaMemcpy2D(out.data(), width, pitched, pitch, width, height, cudaMemcpyDeviceToHost));
    CHECK(out == image);
    cudaPointerAttributes attributes;
    OK(cudaPointerGetAttributes(&attributes, pitched + 5));
    CHECK(attributes.type == cudaMemoryTypeDevice);
    OK(cudaPointerGetAttributes(&attributes, image.data()));
    CHECK(attributes.type == cudaMemoryTypeUnregistered);
    OK(cudaFree(pitched));

    // A 3D box out of a pitched volume: copied in, set in part, copied back out.
    const cudaExtent volume = make_cudaExtent(width, 6, 5);
    cudaPitchedPtr device_volume;
    OK(cudaMalloc3D(&device_volume, volume));
    CHECK(device_volume.pitch >= width && device_volume.ysize == 6);
    std::vector<unsigned char> box(width * 6 * 5), box_out(box.size(), 0);
    fill(box.data(), box.size(), 9);
    cudaMemcpy3DParms in = {};
    in.srcPtr = make_cudaPitchedPtr(box.data(), width, width, 6);
    in.dstPtr = device_volume;
    in.extent = volume;
    in.kind = cudaMemcpyHostToDevice;
    OK(cudaMemcpy3D(&in));
    // Zero a 10 x 2 x 3 block at x 0, y 0 of slices 0..2 (cudaMemset3D starts at the pointer).
    OK(cudaMemset3D(device_volume, 0, make_cudaExtent(10, 2, 3)));
    cudaMemcpy3DParms out3 = {};
    out3.srcPtr = device_volume;
    out3.dstPtr = make_cudaPitchedPtr(box_out.data(), width, width, 6);
    out3.extent = volume;
    out3.kind = cudaMemcpyDeviceToHost;
    OK(cudaMemcpy3D(&out3));
    bool box_ok = true;
    for (size_t z = 0; z < 5; ++z)
      for (size_t y = 0; y < 6; ++y)
        for (size_t x = 0; x < width; ++x) {
          const size_t i = (z * 6 + y) * width + x;
          const bool zeroed = x < 10 && y < 2 && z < 3;
          box_ok = box_ok && box_out[i] == (zeroed ? 0 : box[i]);
        }
    CHECK(box_ok);
    OK(cudaFree(device_volume.ptr));
    void* pooled = nullptr;
    OK(cudaMallocAsync(&pooled, 1 << 20, 0));
    OK(cudaMemsetAsync(pooled, 1, 1 << 20, 0));
    OK(cudaFreeAsync(pooled, 0));
    // Peer copies between (the one) device and itself, and the device's limits.
    unsigned char *p1 = nullptr, *p2 = nullptr;
    OK(cudaMalloc(&p1, 4096));
    OK(cudaMalloc(&p2, 4096));
    OK(cudaMemset(p1, 0x5a, 4096));
    OK(cudaMemcpyPeer(p2, 0, p1, 0, 4096));
    std::vector<unsigned char> peer(4096);
    OK(cudaMemcpy(peer.data(), p2, 4096, cudaMemcpyDeviceToHost));
    CHECK(peer[0] == 0x5a && peer[4095] == 0x5a);
    CHECK(cudaMemcpyPeer(p2, 7, p1, 0, 4096) == cudaErrorInvalidDevice);
    OK(cudaFree(p1));
    OK(cudaFree(p2));
    size_t stack = 0;
    OK(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    // The device's default, 1024, unless an earlier session of the same broker raised it.
    CHECK(stack >= 1024);
    // Limits belong to the context every session shares: raised, never lowered.
    const size_t raised = std::max<size_t>(stack, 4096);
    OK(cudaDeviceSetLimit(cudaLimitStackSize, 4096));
    OK(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    CHECK(stack == raised);
    OK(cudaDeviceSetLimit(cudaLimitStackSize, 2048));
    OK(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    CHECK(stack == raised);
    OK(cudaDeviceSetLimit(cudaLimitMallocHeapSize, 64 << 20));
    size_t heap = 0;
    OK(cudaDeviceGetLimit(&heap, cudaLimitMallocHeapSize));
    CHECK(heap == (64 << 20));
    CHECK(cudaDeviceSetLimit(cudaLimitStackSize, 1 << 30) == cudaErrorInvalidValue);  // beyond the device
    CHECK(cudaDeviceSetLimit(cudaLimitMaxL2FetchGranularity, 32) == cudaErrorNotSupported);
    CHECK(cudaDeviceGetLimit(&stack, static_cast<cudaLimit>(99)) == cudaErrorUnsupportedLimit);
    cudaGetLastError();
    void* managed = nullptr;
    CHECK(cudaMallocManaged(&managed, 4096) == cudaErrorNotSupported);
    CHECK(cudaGetLastError() == cudaErrorNotSupported);
    // The persisting-L2 limit shapes every session's use of the shared cache: refused, and logged.
    CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 1 << 20) == cudaErrorNotSupported);
    CHECK(cudaGetLastError() == cudaErrorNotSupported);
    // A generated stub (graphics interop, never served) records its error as the last error.
    CHECK(cudaGraphicsMapResources(0, nullptr, 0) == cudaErrorNotSupported);
    CHECK(cudaPeekAtLastError() == cudaErrorNotSupported);
    CHECK(cudaGetLastError() == cudaErrorNotSupported);
    CHECK(cudaGetLastError() == cudaSuccess);
    // The profiler calls mark ranges for a profiler; without one they succeed and do nothing.
    OK(cudaProfilerStart());
    OK(cudaProfilerStop());
  }

  {
    // cudaFreeHost waits for the copy still in flight into the block: the next cudaMallocHost
    // (which gets the same memory back) must not see it land.
    const size_t big = 64 << 20;
    unsigned char *device = nullptr, *pinned = nullptr, *again = nullptr;
    OK(cudaMalloc(&device, big));
    OK(cudaMemset(device, 0xab, big));
    OK(cudaMallocHost(&pinned, big));
    cudaStream_t s;
    OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    OK(cudaMemcpyAsync(pinned, device, big, cudaMemcpyDeviceToHost, s));
    OK(cudaFreeHost(pinned));
    OK(cudaMallocHost(&again, big));
    std::memset(again, 0x11, big);
    OK(cudaStreamSynchronize(s));
    CHECK(again[0] == 0x11 && again[big / 2] == 0x11 && again[big - 1] == 0x11);
    OK(cudaFreeHost(again));
    OK(cudaStreamDestroy(s));
    OK(cudaFree(device));
  }

  // Error paths: clear errors, never a hang.
  CHECK(cudaSetDevice(99) == cudaErrorInvalidDevice);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaFree(reinterpret_cast<void*>(0x1234)) == cudaErrorInvalidValue);
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(a, h, n, static_cast<cudaMemcpyKind>(42)) == cudaErrorInvalidMemcpyDirection);
  void* huge = nullptr;
  CHECK(cudaMalloc(&huge, size_t(1) << 50) == cudaErrorMemoryAllocation);
  std::printf("error string: %s\n", cudaGetErrorString(cudaErrorInvalidDevice));
  CHECK(std::strcmp(cudaGetErrorName(cudaErrorInvalidValue), "cudaErrorInvalidValue") == 0);
  OK(cudaFree(a));
  OK(cudaFree(b));
  OK(cudaFreeHost(h));
  OK(cudaDeviceSynchronize());
  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
