// Two devices end to end, through the shims a runner loads (libcudart.so.13, libcuda.so.1,
// libnvidia-ml.so.1, libcublas.so.13) against a broker started with --sim-devices=2: work placed
// on device 1 by cudaSetDevice, memory figures per device in every library, streams used from the
// other device, peer copies, cuBLAS handles per device, and CUDA_VISIBLE_DEVICES reordering and
// naming by UUID, seen alike by the runtime, libcuda and NVML, and by the broker's stats.
//
// Each case runs in child processes (the shims keep one session per process); a child prints what
// differs and exits non-zero. The kernel is scale_by<float> of tests/data/fatbin/kernels.cu, run on
// the sim by the stress plugin (GPUBROKER_SIM_KERNELS).
//
// Where the broker's driver has one device (GPUBROKER_TEST_DRIVER=cuda on a one-GPU host; the
// sim's count comes from --sim-devices), no case can run: the binary says so and exits 77, which
// meson reports as SKIP.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/runtime_abi.h"
#include "gpubroker/wire/stats.h"
#include "ipc/client_session.h"
#include "shim/client/visible_devices.h"
#include "tests/support/broker_process.h"
#include "tests/support/broker_ready.h"
#include "tests/support/child_expect.h"
#include "tests/support/eventually.h"
#include "tests/support/shim_child.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::TempDir;
using testing::in_child;
using testing::start_child;

extern "C" {
struct Dim3 {
  unsigned x, y, z;
};
int cudaGetDeviceCount(int*);
int cudaSetDevice(int);
int cudaGetDevice(int*);
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaMemcpyAsync(void*, const void*, std::size_t, int, void*);
int cudaMemsetAsync(void*, int, std::size_t, void*);
int cudaMemGetInfo(std::size_t*, std::size_t*);
int cudaStreamCreateWithFlags(void**, unsigned);
int cudaStreamSynchronize(void*);
int cudaStreamDestroy(void*);
int cudaEventCreate(void**);
int cudaEventRecord(void*, void*);
int cudaEventSynchronize(void*);
int cudaEventElapsedTime(float*, void*, void*);
int cudaEventDestroy(void*);
int cudaStreamWaitEvent(void*, void*, unsigned);
int cudaLaunchKernel(const void*, Dim3, Dim3, void**, std::size_t, void*);
int cudaDeviceSynchronize();
int cudaGetLastError();
int cudaMemcpyPeer(void*, int, const void*, int, std::size_t);
int cudaMemcpyPeerAsync(void*, int, const void*, int, std::size_t, void*);
int cudaDeviceCanAccessPeer(int*, int, int);
int cudaDeviceEnablePeerAccess(int, unsigned);
int cudaDeviceDisablePeerAccess(int);
int cudaGetDeviceProperties(cuda::rt::DeviceProp13*, int);
int cudaDeviceGetPCIBusId(char*, int, int);
int cudaPointerGetAttributes(cuda::rt::PointerAttributes13*, const void*);
void** __cudaRegisterFatBinary(void*);
void __cudaRegisterFatBinaryEnd(void**);
void __cudaRegisterFunction(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*);
int cuDeviceGetCount(int*);
int cuDeviceGetUuid_v2(unsigned char*, int);
int cuDeviceGetPCIBusId(char*, int, int);
int cuDeviceCanAccessPeer(int*, int, int);
int cuMemGetInfo_v2(std::size_t*, std::size_t*);
int nvmlInit_v2();
int nvmlShutdown();
int nvmlDeviceGetCount_v2(unsigned*);
int nvmlDeviceGetHandleByIndex_v2(unsigned, void**);
int nvmlDeviceGetHandleByUUID(const char*, void**);
int nvmlDeviceGetHandleByPciBusId_v2(const char*, void**);
int nvmlDeviceGetUUID(void*, char*, unsigned);
int nvmlDeviceGetIndex(void*, unsigned*);
int nvmlDeviceGetMemoryInfo(void*, unsigned long long*);
int cublasCreate_v2(void**);
int cublasDestroy_v2(void*);
int cublasSetStream_v2(void*, void*);
int cublasSgemm_v2(void*, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*,
                   float*, int);
}

// The fatbin of tests/data/fatbin/kernels.cu, in the section nvcc puts it in.
asm(".section .nv_fatbin, \"a\"\n.balign 8\n.globl multi_device_fatbin\nmulti_device_fatbin:\n.incbin \"" MULTI_DEVICE_FATBIN
    "\"\n.previous\n");
extern "C" const unsigned long long multi_device_fatbin[];

namespace {

constexpr int kHostToDevice = 1, kDeviceToHost = 2;
constexpr unsigned kNonBlocking = 1;
constexpr int kInvalidResourceHandle = 400, kInvalidDevice = 101, kPeerAccessUnsupported = 217,
              kPeerAccessNotEnabled = 705;
constexpr int kCublasInvalidValue = 7;
constexpr std::size_t kMiB = 1u << 20;

struct FatbinWrapper {
  int magic;
  int version;
  const unsigned long long* data;
  void* unused;
};
const FatbinWrapper kWrapper{0x466243b1, 1, multi_device_fatbin, nullptr};

void scale_by_stub(float*, float, int) {}  // the host stub: its address names the kernel

// Registered as nvcc's static constructors register: records only, before any child is forked.
const bool g_registered = [] {
  void** module = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrapper));
  static char name[] = "_Z8scale_byIfEvPT_S0_i";
  __cudaRegisterFunction(module, reinterpret_cast<const char*>(&scale_by_stub), name, name, -1, nullptr, nullptr,
                         nullptr, nullptr, nullptr);
  __cudaRegisterFatBinaryEnd(module);
  return true;
}();

testing::BrokerSettings two_devices() { return testing::BrokerSettings{{"--sim-devices=2"}, {}}; }

// scale_by<float>(data, factor, n) on `stream`, one block of n threads.
int scale(float* data, float factor, int n, void* stream) {
  void* args[] = {&data, &factor, &n};
  return cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_stub), Dim3{1, 1, 1},
                          Dim3{static_cast<unsigned>(n), 1, 1}, args, 0, stream);
}

std::size_t free_on(int device) {
  std::size_t free = 0, total = 0;
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  EXPECT(cudaMemGetInfo(&free, &total) == 0, "cudaMemGetInfo on device %d", device);
  cudaSetDevice(previous);
  return free;
}

unsigned long long nvml_free(unsigned index) {
  void* handle = nullptr;
  unsigned long long memory[3] = {};  // total, free, used
  EXPECT(nvmlDeviceGetHandleByIndex_v2(index, &handle) == 0 && nvmlDeviceGetMemoryInfo(handle, memory) == 0,
         "NVML memory of device %u", index);
  return memory[1];
}

std::string uuid_text(const unsigned char (&bytes)[16]) {
  std::uint8_t u[16];
  std::memcpy(u, bytes, 16);
  return shim::uuid_string(u);
}

// The broker's device identities as a process with every device visible sees them.
struct Identity {
  unsigned char uuid[16];
  char pci[16];
};
std::vector<Identity> identities(const BrokerProcess& broker) {
  std::vector<Identity> found(2);
  int channel[2];
  if (::pipe(channel) != 0) return {};
  const int status = in_child(broker, [&] {
    for (int device = 0; device < 2; ++device) {
      Identity identity{};
      EXPECT(cuDeviceGetUuid_v2(identity.uuid, device) == 0, "uuid of %d", device);
      EXPECT(cuDeviceGetPCIBusId(identity.pci, sizeof identity.pci, device) == 0, "bus id of %d", device);
      EXPECT(::write(channel[1], &identity, sizeof identity) == sizeof identity, "to the parent");
    }
  });
  for (Identity& identity : found) {
    if (::read(channel[0], &identity, sizeof identity) != sizeof identity) found.clear();
  }
  ::close(channel[0]);
  ::close(channel[1]);
  return status == 0 ? found : std::vector<Identity>{};
}

// What the broker's stats file says sessions hold on each device.
std::vector<std::uint64_t> used_per_device(const BrokerProcess& broker) {
  const int fd = ::open((broker.socket_path() + ".stats").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  void* mapped = ::mmap(nullptr, sizeof(wire::StatsSegment), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) return {};
  std::vector<std::uint64_t> used;
  wire::DeviceStats copy{};
  if (wire::read_consistent(static_cast<const wire::StatsSegment*>(mapped)->devices, copy)) {
    for (std::uint32_t i = 0; i < copy.count && i < wire::kMaxDevices; ++i) used.push_back(copy.devices[i].used_bytes);
  }
  ::munmap(mapped, sizeof(wire::StatsSegment));
  return used;
}

// Whether the stats file comes to show `expected` bytes held on each device (heartbeats come once a
// second).
bool stats_show(const BrokerProcess& broker, std::vector<std::uint64_t> expected) {
  const testing::Waited published = testing::poll_until([&] { return used_per_device(broker) == expected; });
  INFO("the stats showed it after " << published.milliseconds << " ms");
  return static_cast<bool>(published);
}

// Runs `body` in a child that then holds what it allocated until `check` (in the parent) is done.
bool while_child_holds(const BrokerProcess& broker, const std::function<void()>& body, const std::function<bool()>& check,
                       const char* visible_devices = nullptr) {
  int ready[2], done[2];
  if (::pipe(ready) != 0 || ::pipe(done) != 0) return false;
  const pid_t child = start_child(broker, [&] {
    body();
    char byte = 'r';
    EXPECT(::write(ready[1], &byte, 1) == 1, "ready");
    EXPECT(::read(done[0], &byte, 1) == 1, "done");
  }, visible_devices);
  char byte = 0;
  const bool started = child > 0 && ::read(ready[0], &byte, 1) == 1;
  const bool checked = started && check();
  if (child > 0) {
    [[maybe_unused]] auto n = ::write(done[1], "d", 1);
  }
  const int status = child > 0 ? testing::wait_for_child(child) : -1;
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
  return checked && status == 0;
}

}  // namespace

TEST_CASE("after cudaSetDevice(1) allocations, copies, memsets, streams, events and launches run on device 1",
          "[multidevice][runtime]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(in_child(broker, [] {
          const std::size_t free0 = free_on(0), free1 = free_on(1);
          EXPECT(cudaSetDevice(1) == 0, "cudaSetDevice(1)");
          int current = -1;
          EXPECT(cudaGetDevice(&current) == 0 && current == 1, "current %d", current);
          constexpr int n = 256;
          float* data = nullptr;
          EXPECT(cudaMalloc(reinterpret_cast<void**>(&data), 64 * kMiB) == 0, "cudaMalloc");
          EXPECT(free_on(1) == free1 - 64 * kMiB && free_on(0) == free0, "the allocation is device 1's");
          cuda::rt::PointerAttributes13 attributes{};
          EXPECT(cudaPointerGetAttributes(&attributes, data) == 0 && attributes.device == 1, "attributes name device %d",
                 attributes.device);
          void* stream = nullptr;
          void* start = nullptr;
          void* end = nullptr;
          EXPECT(cudaStreamCreateWithFlags(&stream, kNonBlocking) == 0, "stream");
          EXPECT(cudaEventCreate(&start) == 0 && cudaEventCreate(&end) == 0, "events");
          std::vector<float> host(n), back(n, 0.0f);
          for (int i = 0; i < n; ++i) host[i] = static_cast<float>(i);
          EXPECT(cudaEventRecord(start, stream) == 0, "record start");
          EXPECT(cudaMemsetAsync(data + n, 0x7f, n * sizeof(float), stream) == 0, "memset");
          EXPECT(cudaMemcpyAsync(data, host.data(), n * sizeof(float), kHostToDevice, stream) == 0, "copy in");
          EXPECT(scale(data, 3.0f, n, stream) == 0, "launch on device 1's stream");
          EXPECT(cudaEventRecord(end, stream) == 0, "record end");
          EXPECT(cudaEventSynchronize(end) == 0, "event synchronize");
          float milliseconds = -1;
          EXPECT(cudaEventElapsedTime(&milliseconds, start, end) == 0 && milliseconds >= 0, "elapsed %f", milliseconds);
          EXPECT(cudaMemcpyAsync(back.data(), data, n * sizeof(float), kDeviceToHost, stream) == 0, "copy out");
          EXPECT(cudaStreamSynchronize(stream) == 0, "stream synchronize");
          bool scaled = true;
          for (int i = 0; i < n; ++i) scaled &= back[i] == 3.0f * static_cast<float>(i);
          EXPECT(scaled, "the kernel ran on device 1's data");
          std::uint32_t word = 0;
          EXPECT(cudaMemcpy(&word, data + n, sizeof word, kDeviceToHost) == 0 && word == 0x7f7f7f7fu, "memset %08x", word);
          // The default stream is device 1's own: a launch on it, then a synchronous copy.
          EXPECT(scale(data, 2.0f, n, nullptr) == 0, "launch on the default stream");
          EXPECT(cudaDeviceSynchronize() == 0, "cudaDeviceSynchronize");
          EXPECT(cudaMemcpy(back.data(), data, n * sizeof(float), kDeviceToHost) == 0 && back[5] == 30.0f, "%f", back[5]);
          EXPECT(cudaEventDestroy(start) == 0 && cudaEventDestroy(end) == 0, "event destroy");
          EXPECT(cudaStreamDestroy(stream) == 0, "stream destroy");
          EXPECT(cudaFree(data) == 0 && free_on(1) == free1, "cudaFree gives device 1 its memory back");
          EXPECT(cudaSetDevice(2) == kInvalidDevice, "no third device");
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind
}

TEST_CASE("each device's free memory falls with its own allocations, in the runtime, libcuda, NVML and the stats",
          "[multidevice][runtime][driver][nvml]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(while_child_holds(
      broker,
      [] {
        EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
        const std::size_t free0 = free_on(0), free1 = free_on(1);
        EXPECT(nvml_free(0) == free0 && nvml_free(1) == free1, "NVML agrees before");
        void* on0 = nullptr;
        void* on1 = nullptr;
        EXPECT(cudaMalloc(&on0, 64 * kMiB) == 0, "64 MiB on device 0");
        EXPECT(cudaSetDevice(1) == 0 && cudaMalloc(&on1, 128 * kMiB) == 0, "128 MiB on device 1");
        EXPECT(free_on(0) == free0 - 64 * kMiB, "device 0 lost 64 MiB");
        EXPECT(free_on(1) == free1 - 128 * kMiB, "device 1 lost 128 MiB");
        std::size_t free = 0, total = 0;
        EXPECT(cuMemGetInfo_v2(&free, &total) == 0 && free == free1 - 128 * kMiB, "libcuda on the current device 1");
        EXPECT(cudaSetDevice(0) == 0 && cuMemGetInfo_v2(&free, &total) == 0 && free == free0 - 64 * kMiB,
               "libcuda on the current device 0");
        EXPECT(nvml_free(0) == free0 - 64 * kMiB && nvml_free(1) == free1 - 128 * kMiB, "NVML per device");
      },
      [&] { return stats_show(broker, {64 * kMiB, 128 * kMiB}); }));
  CHECK(broker.stop() == 0);
}

TEST_CASE("a stream of device 1 still copies after cudaSetDevice(0), but takes no launch or device-0 event from it",
          "[multidevice][runtime]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(in_child(broker, [] {
          constexpr int n = 64;
          float* on1 = nullptr;
          void* stream1 = nullptr;
          EXPECT(cudaSetDevice(1) == 0 && cudaMalloc(reinterpret_cast<void**>(&on1), n * sizeof(float)) == 0, "malloc");
          EXPECT(cudaStreamCreateWithFlags(&stream1, kNonBlocking) == 0, "device 1's stream");
          EXPECT(cudaSetDevice(0) == 0, "back to device 0");
          std::vector<float> host(n, 1.5f), back(n, 0.0f);
          EXPECT(cudaMemcpyAsync(on1, host.data(), n * sizeof(float), kHostToDevice, stream1) == 0, "copy in");
          EXPECT(cudaMemcpyAsync(back.data(), on1, n * sizeof(float), kDeviceToHost, stream1) == 0, "copy out");
          EXPECT(cudaStreamSynchronize(stream1) == 0 && back[n - 1] == 1.5f, "the copies ran in device 1's context");
          // As in CUDA: a kernel goes only onto the current device's streams. The launch is
          // asynchronous, so its error may come at the next synchronizing call.
          const int launched = scale(on1, 2.0f, n, stream1);
          const int synchronized = cudaStreamSynchronize(stream1);
          EXPECT(launched == kInvalidResourceHandle || synchronized == kInvalidResourceHandle,
                 "launch onto another device's stream: %d, then %d", launched, synchronized);
          (void)cudaGetLastError();
          // An event records only on a stream of its own device; waiting on it works across devices.
          void* event0 = nullptr;
          EXPECT(cudaEventCreate(&event0) == 0, "device 0's event");
          const int recorded = cudaEventRecord(event0, stream1);
          const int after = cudaStreamSynchronize(stream1);
          EXPECT(recorded == kInvalidResourceHandle || after == kInvalidResourceHandle,
                 "device 0's event on device 1's stream: %d, then %d", recorded, after);
          (void)cudaGetLastError();
          EXPECT(cudaEventRecord(event0, nullptr) == 0 && cudaStreamWaitEvent(stream1, event0, 0) == 0 &&
                     cudaStreamSynchronize(stream1) == 0,
                 "device 1's stream waits for device 0's event");
          // On device 1 again the same launch is served.
          EXPECT(cudaSetDevice(1) == 0 && scale(on1, 2.0f, n, stream1) == 0 && cudaStreamSynchronize(stream1) == 0,
                 "launch from device 1");
          EXPECT(cudaMemcpy(back.data(), on1, n * sizeof(float), kDeviceToHost) == 0 && back[0] == 3.0f, "%f", back[0]);
          EXPECT(cudaEventDestroy(event0) == 0 && cudaStreamDestroy(stream1) == 0 && cudaFree(on1) == 0, "release");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("cudaMemcpyPeer copies between the devices, and peer access is not offered", "[multidevice][runtime][peer]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(in_child(broker, [] {
          constexpr std::size_t bytes = 3 * kMiB + 100;
          std::vector<std::uint8_t> pattern(bytes), back(bytes, 0);
          for (std::size_t i = 0; i < bytes; ++i) pattern[i] = static_cast<std::uint8_t>(i * 7 + (i >> 12));
          void* on0 = nullptr;
          void* on1 = nullptr;
          void* stream0 = nullptr;
          EXPECT(cudaMalloc(&on0, bytes) == 0 && cudaStreamCreateWithFlags(&stream0, kNonBlocking) == 0, "device 0");
          EXPECT(cudaSetDevice(1) == 0 && cudaMalloc(&on1, bytes) == 0, "device 1");
          EXPECT(cudaMemcpy(on1, pattern.data(), bytes, kHostToDevice) == 0, "fill device 1");
          EXPECT(cudaMemcpyPeer(on0, 0, on1, 1, bytes) == 0, "device 1 to device 0");
          EXPECT(cudaSetDevice(0) == 0 && cudaMemcpy(back.data(), on0, bytes, kDeviceToHost) == 0 && back == pattern,
                 "device 0 holds device 1's bytes");
          EXPECT(cudaMemsetAsync(on0, 0x5a, bytes / 2, stream0) == 0, "change device 0's copy");
          EXPECT(cudaMemcpyPeerAsync(on1, 1, on0, 0, bytes, stream0) == 0 && cudaStreamSynchronize(stream0) == 0,
                 "device 0 to device 1 on device 0's stream");
          EXPECT(cudaSetDevice(1) == 0 && cudaMemcpy(back.data(), on1, bytes, kDeviceToHost) == 0, "read device 1");
          EXPECT(back[0] == 0x5a && back[bytes / 2 - 1] == 0x5a && back[bytes / 2] == pattern[bytes / 2],
                 "device 1 holds device 0's bytes");
          EXPECT(cudaMemcpyPeer(on0, 2, on1, 1, bytes) == kInvalidDevice, "a device that does not exist");
          int can_access = -1;
          EXPECT(cudaDeviceCanAccessPeer(&can_access, 1, 0) == 0 && can_access == 0, "runtime: %d", can_access);
          can_access = -1;
          EXPECT(cuDeviceCanAccessPeer(&can_access, 0, 1) == 0 && can_access == 0, "libcuda: %d", can_access);
          EXPECT(cudaDeviceEnablePeerAccess(0, 0) == kPeerAccessUnsupported, "enabling is refused");
          EXPECT(cudaDeviceDisablePeerAccess(0) == kPeerAccessNotEnabled, "so it is never enabled");
          (void)cudaGetLastError();
          EXPECT(cudaFree(on1) == 0 && cudaSetDevice(0) == 0 && cudaFree(on0) == 0 && cudaStreamDestroy(stream0) == 0,
                 "release");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("a cuBLAS handle made on device 1 computes there and refuses a stream of device 0",
          "[multidevice][cublas]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(in_child(broker, [] {
          constexpr int n = 4;
          void* stream0 = nullptr;
          EXPECT(cudaStreamCreateWithFlags(&stream0, kNonBlocking) == 0, "device 0's stream");
          EXPECT(cudaSetDevice(1) == 0, "device 1");
          float* a = nullptr;
          float* c = nullptr;
          EXPECT(cudaMalloc(reinterpret_cast<void**>(&a), n * n * sizeof(float)) == 0 &&
                     cudaMalloc(reinterpret_cast<void**>(&c), n * n * sizeof(float)) == 0,
                 "matrices on device 1");
          std::vector<float> identity(n * n, 0.0f), values(n * n), product(n * n, 0.0f);
          for (int i = 0; i < n; ++i) identity[i * n + i] = 1.0f;
          for (int i = 0; i < n * n; ++i) values[i] = static_cast<float>(i + 1);
          EXPECT(cudaMemcpy(a, values.data(), values.size() * sizeof(float), kHostToDevice) == 0, "A");
          void* handle = nullptr;
          void* stream1 = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate on device 1");
          EXPECT(cudaStreamCreateWithFlags(&stream1, kNonBlocking) == 0, "device 1's stream");
          EXPECT(cublasSetStream_v2(handle, stream0) == kCublasInvalidValue, "a stream of device 0");
          EXPECT(cublasSetStream_v2(handle, stream1) == 0, "a stream of device 1");
          // C = 2 A * I, computed while device 0 is current: the handle keeps to its device.
          EXPECT(cudaSetDevice(0) == 0, "device 0 current");
          const float alpha = 2.0f, beta = 0.0f;
          float* id = nullptr;
          EXPECT(cudaSetDevice(1) == 0 && cudaMalloc(reinterpret_cast<void**>(&id), n * n * sizeof(float)) == 0 &&
                     cudaMemcpy(id, identity.data(), identity.size() * sizeof(float), kHostToDevice) == 0 &&
                     cudaSetDevice(0) == 0,
                 "I on device 1");
          EXPECT(cublasSgemm_v2(handle, 0, 0, n, n, n, &alpha, a, n, id, n, &beta, c, n) == 0, "SGEMM");
          EXPECT(cudaStreamSynchronize(stream1) == 0, "device 1's stream synchronize");
          EXPECT(cudaMemcpy(product.data(), c, product.size() * sizeof(float), kDeviceToHost) == 0, "C");
          bool doubled = true;
          for (int i = 0; i < n * n; ++i) doubled &= product[i] == 2.0f * values[i];
          EXPECT(doubled, "C = 2 A");
          EXPECT(cublasDestroy_v2(handle) == 0, "cublasDestroy");
          EXPECT(cudaFree(a) == 0 && cudaFree(c) == 0 && cudaFree(id) == 0, "free");
          EXPECT(cudaStreamDestroy(stream0) == 0 && cudaStreamDestroy(stream1) == 0, "streams");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("the two devices have their own identities, alike in the runtime, libcuda and NVML", "[multidevice][nvml]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  CHECK(in_child(broker, [] {
          int runtime = 0, driver = 0;
          unsigned nvml = 0;
          EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
          EXPECT(cudaGetDeviceCount(&runtime) == 0 && cuDeviceGetCount(&driver) == 0 &&
                     nvmlDeviceGetCount_v2(&nvml) == 0 && runtime == 2 && driver == 2 && nvml == 2,
                 "counts %d %d %u", runtime, driver, nvml);
          std::string uuids[2];
          std::string buses[2];
          for (int device = 0; device < 2; ++device) {
            cuda::rt::DeviceProp13 prop{};
            EXPECT(cudaGetDeviceProperties(&prop, device) == 0, "properties");
            unsigned char uuid[16];
            EXPECT(cuDeviceGetUuid_v2(uuid, device) == 0 && std::memcmp(uuid, &prop.uuid, 16) == 0, "uuid");
            uuids[device] = uuid_text(uuid);
            char bus[16] = {}, runtime_bus[16] = {};
            EXPECT(cuDeviceGetPCIBusId(bus, sizeof bus, device) == 0 &&
                       cudaDeviceGetPCIBusId(runtime_bus, sizeof runtime_bus, device) == 0 &&
                       std::string(bus) == runtime_bus,
                   "bus id %s", bus);
            buses[device] = bus;
            void* by_index = nullptr;
            void* by_uuid = nullptr;
            void* by_bus = nullptr;
            char nvml_uuid[96] = {};
            EXPECT(nvmlDeviceGetHandleByIndex_v2(device, &by_index) == 0 &&
                       nvmlDeviceGetUUID(by_index, nvml_uuid, sizeof nvml_uuid) == 0 && uuids[device] == nvml_uuid,
                   "NVML uuid %s", nvml_uuid);
            EXPECT(nvmlDeviceGetHandleByUUID(uuids[device].c_str(), &by_uuid) == 0 && by_uuid == by_index, "by UUID");
            EXPECT(nvmlDeviceGetHandleByPciBusId_v2(bus, &by_bus) == 0 && by_bus == by_index, "by bus id %s", bus);
            unsigned index = 9;
            EXPECT(nvmlDeviceGetIndex(by_bus, &index) == 0 && index == static_cast<unsigned>(device), "index %u", index);
          }
          EXPECT(uuids[0] != uuids[1] && buses[0] != buses[1], "two devices, not one twice");
          nvmlShutdown();
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("CUDA_VISIBLE_DEVICES=1,0 swaps the devices alike in the runtime, libcuda, NVML and the broker",
          "[multidevice][visible]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  const std::vector<Identity> broker_devices = identities(broker);
  REQUIRE(broker_devices.size() == 2);
  CHECK(while_child_holds(
      broker,
      [&] {
        EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
        for (int visible = 0; visible < 2; ++visible) {
          const Identity& expected = broker_devices[1 - visible];
          cuda::rt::DeviceProp13 prop{};
          unsigned char uuid[16];
          char bus[16] = {};
          EXPECT(cudaGetDeviceProperties(&prop, visible) == 0 && std::memcmp(&prop.uuid, expected.uuid, 16) == 0,
                 "runtime device %d", visible);
          EXPECT(cuDeviceGetUuid_v2(uuid, visible) == 0 && std::memcmp(uuid, expected.uuid, 16) == 0,
                 "libcuda device %d", visible);
          EXPECT(cuDeviceGetPCIBusId(bus, sizeof bus, visible) == 0 && std::string(bus) == expected.pci,
                 "libcuda bus id %s", bus);
          void* handle = nullptr;
          char text[96] = {};
          EXPECT(nvmlDeviceGetHandleByIndex_v2(visible, &handle) == 0 && nvmlDeviceGetUUID(handle, text, sizeof text) == 0 &&
                     uuid_text(expected.uuid) == text,
                 "NVML device %d is %s", visible, text);
        }
        // Device 0 of the process is the broker's device 1: the allocation lands there.
        const std::size_t free_visible1 = free_on(1);
        void* memory = nullptr;
        EXPECT(cudaMalloc(&memory, 32 * kMiB) == 0, "32 MiB on visible device 0");
        EXPECT(free_on(1) == free_visible1 && nvml_free(1) == free_visible1, "visible device 1 keeps its memory");
        // cuBLAS goes by the runtime's current device: a handle made on visible device 0 computes on
        // broker device 1, next to its memory, and takes no stream of visible device 1.
        void* handle = nullptr;
        void* other_stream = nullptr;
        EXPECT(cudaSetDevice(1) == 0 && cudaStreamCreateWithFlags(&other_stream, kNonBlocking) == 0 && cudaSetDevice(0) == 0,
               "a stream of visible device 1");
        EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate on visible device 0");
        EXPECT(cublasSetStream_v2(handle, other_stream) == kCublasInvalidValue, "visible device 1's stream is refused");
        auto* matrices = static_cast<float*>(memory);
        const float ones[4] = {1, 1, 1, 1}, alpha = 1.0f, beta = 0.0f;
        float product[4] = {};
        EXPECT(cudaMemcpy(matrices, ones, sizeof ones, kHostToDevice) == 0, "A = B = ones");
        EXPECT(cublasSgemm_v2(handle, 0, 0, 2, 2, 2, &alpha, matrices, 2, matrices, 2, &beta, matrices + 4, 2) == 0 &&
                   cudaMemcpy(product, matrices + 4, sizeof product, kDeviceToHost) == 0 && product[3] == 2.0f,
               "SGEMM on the handle's device: %f", product[3]);
        EXPECT(cublasDestroy_v2(handle) == 0 && cudaStreamDestroy(other_stream) == 0, "release");
      },
      [&] { return stats_show(broker, {0, 32 * kMiB}); }, "1,0"));
  CHECK(broker.stop() == 0);
}

TEST_CASE("CUDA_VISIBLE_DEVICES naming device 1 by its UUID, or a unique prefix of it, leaves device 1 alone visible",
          "[multidevice][visible]") {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  const std::vector<Identity> broker_devices = identities(broker);
  REQUIRE(broker_devices.size() == 2);
  const std::string uuid = uuid_text(broker_devices[1].uuid);
  // The shortest prefix of device 1's UUID that device 0's does not share, and one more digit.
  const std::string other = uuid_text(broker_devices[0].uuid);
  std::size_t common = 0;
  while (common < uuid.size() && uuid[common] == other[common]) ++common;
  const std::string prefix = uuid.substr(0, common + 2);
  for (const std::string& variable : {uuid, prefix}) {
    INFO("CUDA_VISIBLE_DEVICES=" << variable);
    CHECK(while_child_holds(
        broker,
        [&] {
          int runtime = 0, driver = 0;
          unsigned nvml = 0;
          EXPECT(nvmlInit_v2() == 0 && nvmlDeviceGetCount_v2(&nvml) == 0 && nvml == 1, "NVML count %u", nvml);
          EXPECT(cudaGetDeviceCount(&runtime) == 0 && runtime == 1, "runtime count %d", runtime);
          EXPECT(cuDeviceGetCount(&driver) == 0 && driver == 1, "libcuda count %d", driver);
          cuda::rt::DeviceProp13 prop{};
          unsigned char bytes[16];
          EXPECT(cudaGetDeviceProperties(&prop, 0) == 0 && std::memcmp(&prop.uuid, broker_devices[1].uuid, 16) == 0,
                 "runtime device 0 is broker device 1");
          EXPECT(cuDeviceGetUuid_v2(bytes, 0) == 0 && std::memcmp(bytes, broker_devices[1].uuid, 16) == 0,
                 "libcuda device 0 is broker device 1");
          void* handle = nullptr;
          EXPECT(nvmlDeviceGetHandleByUUID(uuid.c_str(), &handle) == 0, "NVML finds it by UUID");
          EXPECT(cudaSetDevice(1) == kInvalidDevice, "no second device");
          (void)cudaGetLastError();
          void* memory = nullptr;
          EXPECT(cudaMalloc(&memory, 16 * kMiB) == 0, "16 MiB");
        },
        [&] { return stats_show(broker, {0, 16 * kMiB}); }, variable.c_str()));
  }
  CHECK(broker.stop() == 0);
}

namespace {

// The device the raw client's requests name (ClientSession::set_device_of_thread).
std::uint32_t g_request_device = 0;
std::uint32_t request_device(const void*) { return g_request_device; }

}  // namespace

TEST_CASE("a request naming a device the broker lacks fails with CUDA_ERROR_INVALID_DEVICE; the memory limit is per device",
          "[multidevice][broker]") {
  TempDir dir;
  BrokerProcess broker(dir, testing::BrokerSettings{{"--sim-devices=2", "--session-memory-limit=64M"}, {}});
  REQUIRE(testing::wait_until_listening(broker.socket_path()));
  auto connected = ipc::ClientSession::connect(testing::client_options(broker.socket_path(), wire::kProtocol));
  REQUIRE(connected);
  ipc::ClientSession& session = *connected.value();
  session.set_device_of_thread(request_device, nullptr);
  const auto* control = reinterpret_cast<const wire::ControlSegment*>(session.control_bytes().data());
  REQUIRE(control->devices.count == 2);
  CHECK(std::memcmp(control->devices.devices[0].uuid, control->devices.devices[1].uuid, 16) != 0);
  CHECK(std::string(control->devices.devices[0].pci_bus_id) != control->devices.devices[1].pci_bus_id);
  auto call = [&](wire::RequestKind kind, const auto& payload) {
    auto reply = session.call(kind, wire::bytes_of(payload));
    REQUIRE(reply);
    return reply.value();
  };
  constexpr int kOutOfMemory = 2;

  g_request_device = 2;
  CHECK(call(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{0x100, 1, 0}).status == kInvalidDevice);
  const std::vector<std::byte> staged(4096, std::byte{1});
  const wire::CopyRequest copy{0x1000, 0, staged.size(), 0};
  auto refused = session.call(wire::RequestKind::kCopyHostToDevice, wire::bytes_of(copy), ipc::StagedOut{staged});
  REQUIRE(refused);
  CHECK(refused.value().status == kInvalidDevice);  // its staged bytes drained: the pipe stays in step

  // 48 MiB fit on each device under a 64 MiB limit; a third block on device 0 does not.
  g_request_device = 1;
  const auto on0 = call(wire::RequestKind::kMemAlloc, wire::MemAllocRequest{0, 0, 48 * kMiB});
  const auto on1 = call(wire::RequestKind::kMemAlloc, wire::MemAllocRequest{1, 0, 48 * kMiB});
  CHECK(on0.status == 0);
  CHECK(on1.status == 0);
  CHECK(call(wire::RequestKind::kMemAlloc, wire::MemAllocRequest{0, 0, 32 * kMiB}).status == kOutOfMemory);
  for (std::uint32_t device : {0u, 1u}) {
    const auto info = call(wire::RequestKind::kMemGetInfo, wire::DeviceRequest{device, 0}).result_as<wire::MemInfoResult>();
    CHECK(info.total == 64 * kMiB);
    CHECK(info.free == 16 * kMiB);
  }
  const std::vector<std::byte> bytes(8192, std::byte{7});
  std::vector<std::byte> back(bytes.size());
  const std::uint64_t pointer = on1.result_as<wire::PointerResult>().pointer;
  const wire::CopyRequest upload{pointer, 0, bytes.size(), 0};
  auto uploaded = session.call(wire::RequestKind::kCopyHostToDevice, wire::bytes_of(upload), ipc::StagedOut{bytes});
  REQUIRE(uploaded);
  CHECK(uploaded.value().status == 0);
  const wire::CopyRequest download{0, pointer, back.size(), 0};
  auto downloaded = session.call(wire::RequestKind::kCopyDeviceToHost, wire::bytes_of(download), ipc::StagedIn{back});
  REQUIRE(downloaded);
  CHECK(downloaded.value().status == 0);
  CHECK(back == bytes);
  CHECK(call(wire::RequestKind::kMemFree, wire::HandleRequest{on0.result_as<wire::PointerResult>().pointer}).status == 0);
  CHECK(call(wire::RequestKind::kMemFree, wire::HandleRequest{pointer}).status == 0);
  connected.value().reset();
  CHECK(broker.stop() == 0);
}

namespace {

// How many devices the broker's driver offers, asked of a probe broker through the runtime shim.
int broker_device_count() {
  TempDir dir;
  BrokerProcess broker(dir, two_devices());
  if (!testing::wait_until_listening(broker.socket_path())) return 0;
  const pid_t child = testing::run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    int count = 0;
    return cudaGetDeviceCount(&count) == 0 ? count : 0;
  });
  return testing::wait_for_child(child);
}

}  // namespace

int main(int argc, char** argv) {
  (void)g_registered;
  const int devices = broker_device_count();
  if (devices < 2) {
    std::printf("SKIP: the broker's driver (--driver=%s) offers %d device(s); every case here needs two (a GPU host "
                "with one device cannot run them)\n",
                testing::env_or("GPUBROKER_TEST_DRIVER", "sim"), devices);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
