// Tests of the sim driver (libgpubroker-sim.so), loaded as the broker loads a driver: dlopen, then
// dlsym of every entry of GPUBROKER_DRIVER_API into a DriverTable (sim_fixture.h). The sim's
// cuBLAS is tested in cublas_test.cc.
//
// One sim is loaded per process and shared by the tests; each test frees what it creates and
// checks that the live counters are back where they were. Configuration read at cuInit
// (GPUBROKER_SIM_DEVICES, GPUBROKER_SIM_MEMORY_BYTES) is tested in a child process: this binary
// runs itself with a hidden test case selected and the environment set.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "gpubroker/sim/sim_driver.h"
#include "sim_fixture.h"
#include "sim_test_paths.h"
#include "tests/support/skip.h"

using namespace gpubroker::cuda;
using namespace sim_fixture;

namespace {

std::uint64_t checksum(const std::vector<unsigned char>& bytes) {
  std::uint64_t sum = 1469598103934665603ull;
  for (unsigned char byte : bytes) sum = (sum ^ byte) * 1099511628211ull;
  return sum;
}

std::vector<unsigned char> pattern(std::size_t bytes, unsigned seed) {
  std::vector<unsigned char> out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<unsigned char>((i * 131 + seed * 7) >> 1);
  return out;
}


std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// Runs this test binary again with only `tag` selected and `environment` added; its exit status.
int run_child(const char* tag, const std::vector<std::string>& environment) {
  pid_t child = fork();
  if (child == 0) {
    for (const std::string& assignment : environment) putenv(const_cast<char*>(assignment.c_str()));
    execl("/proc/self/exe", "sim_test", tag, static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

#if !SIM_HAVE_CUBLAS_HEADERS
// cublas_abi_test.cc holds this case where the CUDA 13 toolkit's cuBLAS headers are installed.
TEST_CASE("cublas_api.h matches NVIDIA's cuBLAS and library_types headers", "[sim][cublas][abi][cuda13]") {
  SKIP_CASE("no /usr/local/cuda/include/cublas_api.h was found at configure time");
}
#endif

TEST_CASE("the sim exports every driver and cuBLAS function the broker resolves", "[sim][abi]") {
  LoadedSim loaded = load_sim();
  INFO("missing: " << loaded.missing.size());
  for (const std::string& symbol : loaded.missing) UNSCOPED_INFO(symbol);
  CHECK(loaded.missing.empty());
  CHECK(loaded.counters != nullptr);
  CHECK(loaded.register_kernel != nullptr);
  // Nothing but the driver and cuBLAS APIs and the sim's own functions: the fatbin parser stays inside.
  CHECK(dlsym(loaded.library, "_ZN9gpubroker6fatbin12parse_moduleESt4spanIKSt4byteLm18446744073709551615EEj") ==
        nullptr);
}

TEST_CASE("the device presents an H100 SXM5 identity and answers every attribute", "[sim][device]") {
  DriverTable& cu = sim().cu;
  int version = 0;
  REQUIRE(cu.driver_get_version(&version) == CUDA_SUCCESS);
  CHECK(version == 13000);
  int count = 0;
  REQUIRE(cu.device_get_count(&count) == CUDA_SUCCESS);
  CHECK(count == 1);
  CUdevice device = -1;
  REQUIRE(cu.device_get(&device, 0) == CUDA_SUCCESS);
  CHECK(cu.device_get(&device, 1) == CUDA_ERROR_INVALID_DEVICE);

  char name[64];
  REQUIRE(cu.device_get_name(name, sizeof name, device) == CUDA_SUCCESS);
  CHECK(std::string(name) == "NVIDIA H100 80GB HBM3");
  char short_name[6];
  REQUIRE(cu.device_get_name(short_name, sizeof short_name, device) == CUDA_SUCCESS);
  CHECK(std::string(short_name) == "NVIDI");

  std::size_t total = 0;
  REQUIRE(cu.device_total_mem(&total, device) == CUDA_SUCCESS);
  CHECK(total == 85899345920ull);

  CUuuid first{}, again{};
  REQUIRE(cu.device_get_uuid(&first, device) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_uuid(&again, device) == CUDA_SUCCESS);
  CHECK(std::memcmp(first.bytes, again.bytes, 16) == 0);
  CHECK((first.bytes[6] & 0xF0) == 0x40);
  CHECK((first.bytes[8] & 0xC0) == 0x80);

  char bus_id[32];
  REQUIRE(cu.device_get_pci_bus_id(bus_id, sizeof bus_id, device) == CUDA_SUCCESS);
  int bus = 0, domain = -1, pci_device = -1;
  REQUIRE(cu.device_get_attribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, device) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_attribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, device) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_attribute(&pci_device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, device) == CUDA_SUCCESS);
  char expected[32];
  std::snprintf(expected, sizeof expected, "%04X:%02X:%02X.0", domain, bus, pci_device);
  CHECK(std::string(bus_id) == expected);

  // Every value up to CUDA 13.0's CU_DEVICE_ATTRIBUTE_MAX (148; driver_api.h's constant is older).
  for (int attribute = 1; attribute < 148; ++attribute) {
    int value = -12345;
    INFO("attribute " << attribute);
    CHECK(cu.device_get_attribute(&value, attribute, device) == CUDA_SUCCESS);
    CHECK(value != -12345);
  }
  int value = 0;
  CHECK(cu.device_get_attribute(&value, 0, device) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.device_get_attribute(&value, 148, device) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.device_get_attribute(&value, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 7) == CUDA_ERROR_INVALID_DEVICE);

  auto attribute = [&](CUdevice_attribute which) {
    int answer = 0;
    REQUIRE(cu.device_get_attribute(&answer, which, device) == CUDA_SUCCESS);
    return answer;
  };
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) == 9);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) == 0);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT) == 132);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_WARP_SIZE) == 32);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK) == 1024);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z) == 64);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X) == 2147483647);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK) == 49152);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN) == 232448);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR) == 233472);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE) == 52428800);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH) == 5120);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING) == 1);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) == 1);
  CHECK(attribute(CU_DEVICE_ATTRIBUTE_INTEGRATED) == 0);
}

TEST_CASE("calls before cuInit fail and the environment sets devices and memory size", "[.][sim_child_config]") {
  LoadedSim loaded = load_sim();
  REQUIRE(loaded.missing.empty());
  DriverTable& cu = loaded.cu;
  int count = 0;
  CHECK(cu.device_get_count(&count) == CUDA_ERROR_NOT_INITIALIZED);
  CUdeviceptr pointer = 0;
  CHECK(cu.mem_alloc(&pointer, 256) == CUDA_ERROR_NOT_INITIALIZED);
  CHECK(cu.stream_synchronize(nullptr) == CUDA_ERROR_NOT_INITIALIZED);
  const char* text = nullptr;
  CHECK(cu.get_error_name(CUDA_ERROR_NOT_INITIALIZED, &text) == CUDA_SUCCESS);  // needs no cuInit

  REQUIRE(cu.init(0) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_count(&count) == CUDA_SUCCESS);
  CHECK(count == 2);
  char bus0[16], bus1[16];
  REQUIRE(cu.device_get_pci_bus_id(bus0, sizeof bus0, 0) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_pci_bus_id(bus1, sizeof bus1, 1) == CUDA_SUCCESS);
  CHECK(std::string(bus0) != std::string(bus1));
  CUuuid uuid0{}, uuid1{};
  REQUIRE(cu.device_get_uuid(&uuid0, 0) == CUDA_SUCCESS);
  REQUIRE(cu.device_get_uuid(&uuid1, 1) == CUDA_SUCCESS);
  CHECK(std::memcmp(uuid0.bytes, uuid1.bytes, 16) != 0);

  CHECK(cu.mem_alloc(&pointer, 256) == CUDA_ERROR_INVALID_CONTEXT);  // no current context yet
  CUcontext context = nullptr;
  REQUIRE(cu.primary_ctx_retain(&context, 1) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_set_current(context) == CUDA_SUCCESS);
  std::size_t free = 0, total = 0;
  REQUIRE(cu.mem_get_info(&free, &total) == CUDA_SUCCESS);
  CHECK(total == 4u << 20);
  CHECK(free == total);
  CUdeviceptr first = 0, second = 0;
  REQUIRE(cu.mem_alloc(&first, 3u << 20) == CUDA_SUCCESS);
  CHECK(cu.mem_alloc(&second, 2u << 20) == CUDA_ERROR_OUT_OF_MEMORY);
  REQUIRE(cu.mem_get_info(&free, &total) == CUDA_SUCCESS);
  CHECK(free == 1u << 20);
  REQUIRE(cu.mem_free(first) == CUDA_SUCCESS);
  REQUIRE(cu.mem_alloc(&second, 4u << 20) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(second) == CUDA_SUCCESS);
  REQUIRE(cu.primary_ctx_release(1) == CUDA_SUCCESS);
}

TEST_CASE("the environment sets the device count and memory size, read by the first cuInit", "[sim][config]") {
  CHECK(run_child("[sim_child_config]",
                  {"GPUBROKER_SIM_DEVICES=2", "GPUBROKER_SIM_MEMORY_BYTES=4194304"}) == 0);
}

TEST_CASE("device memory is allocated aligned, accounted and freed; unknown pointers are refused",
          "[sim][memory]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  std::size_t free_before = 0, total = 0;
  REQUIRE(cu.mem_get_info(&free_before, &total) == CUDA_SUCCESS);

  CUdeviceptr small = 0, large = 0;
  REQUIRE(cu.mem_alloc(&small, 100) == CUDA_SUCCESS);
  CHECK(small % 256 == 0);
  // 64 GiB: address space only, nothing is committed until touched.
  REQUIRE(cu.mem_alloc(&large, std::size_t{64} << 30) == CUDA_SUCCESS);
  CHECK(large % 256 == 0);
  reinterpret_cast<unsigned char*>(large)[(std::size_t{64} << 30) - 1] = 7;
  std::size_t free_now = 0;
  REQUIRE(cu.mem_get_info(&free_now, &total) == CUDA_SUCCESS);
  CHECK(free_before - free_now >= (std::size_t{64} << 30) + 100);
  CHECK(counters().live_allocations == before.live_allocations + 2);

  CUdeviceptr too_much = 0;
  CHECK(cu.mem_alloc(&too_much, std::size_t{17} << 30) == CUDA_ERROR_OUT_OF_MEMORY);
  CHECK(cu.mem_alloc(&too_much, 0) == CUDA_ERROR_INVALID_VALUE);

  CHECK(cu.mem_free(small + 16) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.mem_free(0xdead0000) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.mem_free(small) == CUDA_SUCCESS);
  CHECK(cu.mem_free(small) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.mem_free(large) == CUDA_SUCCESS);
  REQUIRE(cu.mem_get_info(&free_now, &total) == CUDA_SUCCESS);
  CHECK(free_now == free_before);
  require_nothing_left(before);
}

TEST_CASE("copies of every direction move the bytes and are checked against live allocations", "[sim][copy]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  constexpr std::size_t kBytes = 1 << 20;
  const std::vector<unsigned char> source = pattern(kBytes, 1);
  CUdeviceptr a = 0, b = 0;
  REQUIRE(cu.mem_alloc(&a, kBytes) == CUDA_SUCCESS);
  REQUIRE(cu.mem_alloc(&b, kBytes) == CUDA_SUCCESS);

  std::vector<unsigned char> back(kBytes, 0);
  REQUIRE(cu.memcpy_htod_async(a, source.data(), kBytes, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtod_async(b, a, kBytes, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(back.data(), b, kBytes, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(checksum(back) == checksum(source));

  // Memset, then a 2D copy of a 64 x 32 window out of a pitched device buffer.
  REQUIRE(cu.memset_d8_async(b, 0x5A, 4096, stream) == CUDA_SUCCESS);
  CUDA_MEMCPY2D window{};
  std::vector<unsigned char> host_window(64 * 32, 0);
  window.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  window.srcDevice = a;
  window.srcPitch = 256;
  window.srcXInBytes = 16;
  window.srcY = 2;
  window.dstMemoryType = CU_MEMORYTYPE_HOST;
  window.dstHost = host_window.data();
  window.dstPitch = 64;
  window.WidthInBytes = 64;
  window.Height = 32;
  REQUIRE(cu.memcpy_2d_async(&window, stream) == CUDA_SUCCESS);
  std::vector<unsigned char> memset_back(4096, 0);
  REQUIRE(cu.memcpy_dtoh_async(memset_back.data(), b, 4096, stream) == CUDA_SUCCESS);
  // Host to device 2D and host to host 2D.
  CUDA_MEMCPY2D upload = window;
  upload.srcMemoryType = CU_MEMORYTYPE_HOST;
  upload.srcHost = host_window.data();
  upload.srcPitch = 64;
  upload.srcXInBytes = upload.srcY = 0;
  upload.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  upload.dstDevice = b;
  upload.dstPitch = 128;
  upload.dstXInBytes = upload.dstY = 0;
  REQUIRE(cu.memcpy_2d_async(&upload, stream) == CUDA_SUCCESS);
  std::vector<unsigned char> host_copy(64 * 32, 0);
  CUDA_MEMCPY2D host_to_host = window;
  host_to_host.srcMemoryType = CU_MEMORYTYPE_HOST;
  host_to_host.srcHost = host_window.data();
  host_to_host.srcPitch = 64;
  host_to_host.srcXInBytes = host_to_host.srcY = 0;
  host_to_host.dstHost = host_copy.data();
  REQUIRE(cu.memcpy_2d_async(&host_to_host, stream) == CUDA_SUCCESS);
  std::vector<unsigned char> uploaded(128 * 32, 0);
  REQUIRE(cu.memcpy_dtoh_async(uploaded.data(), b, uploaded.size(), stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);

  CHECK(std::all_of(memset_back.begin(), memset_back.end(), [](unsigned char c) { return c == 0x5A; }));
  bool window_matches = true, upload_matches = true;
  for (std::size_t row = 0; row < 32; ++row)
    for (std::size_t column = 0; column < 64; ++column) {
      const unsigned char expected = source[(row + 2) * 256 + 16 + column];
      window_matches &= host_window[row * 64 + column] == expected;
      upload_matches &= uploaded[row * 128 + column] == expected;
    }
  CHECK(window_matches);
  CHECK(upload_matches);
  CHECK(host_copy == host_window);

  const GpubrokerSimCounters after = counters();
  CHECK(after.bytes_host_to_device - before.bytes_host_to_device == kBytes + 64 * 32);
  CHECK(after.bytes_device_to_host - before.bytes_device_to_host == kBytes + 64 * 32 + 4096 + 128 * 32);
  CHECK(after.bytes_device_to_device - before.bytes_device_to_device == kBytes);
  CHECK(after.bytes_host_to_host - before.bytes_host_to_host == 64 * 32);
  CHECK(after.bytes_memset - before.bytes_memset == 4096);

  // Device ranges outside live allocations are refused at enqueue time.
  CHECK(cu.memcpy_htod_async(a + kBytes - 8, source.data(), 16, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.memcpy_dtoh_async(back.data(), 0x1000, 16, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.memcpy_dtod_async(a, b + 1, kBytes, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.memset_d8_async(b + kBytes - 1, 0, 2, stream) == CUDA_ERROR_INVALID_VALUE);
  window.Height = 5000;
  CHECK(cu.memcpy_2d_async(&window, stream) == CUDA_ERROR_INVALID_VALUE);
  window.Height = 32;
  window.srcMemoryType = 3;  // CU_MEMORYTYPE_ARRAY: the sim has no arrays
  CHECK(cu.memcpy_2d_async(&window, stream) == CUDA_ERROR_NOT_SUPPORTED);
  CHECK(cu.memcpy_2d_async(nullptr, stream) == CUDA_ERROR_INVALID_VALUE);

  // The NULL stream is a real stream too.
  std::vector<unsigned char> via_null(256, 0);
  REQUIRE(cu.memcpy_dtoh_async(via_null.data(), a, 256, nullptr) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
  CHECK(std::equal(via_null.begin(), via_null.end(), source.begin()));

  REQUIRE(cu.mem_free(a) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(b) == CUDA_SUCCESS);
  CHECK(cu.memcpy_htod_async(a, source.data(), 16, stream) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

namespace {
struct SlowWrite {
  int* target;
  int value;
  static void run(void* data) {
    auto* self = static_cast<SlowWrite*>(data);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    *self->target = self->value;
  }
};

// A stream whose work waits behind a gate the test opens (so that it is still queued for as long
// as the test looks, however loaded the machine), then 50 ms behind a host function that writes 42
// to `host`; then `host` is copied to the device and back into `back`.
struct SlowRoundTrip {
  CUstream stream = make_stream();
  CUdeviceptr device = 0;
  int host = 0, back = 0;
  Gate gate;
  SlowWrite write{&host, 42};

  SlowRoundTrip() {
    DriverTable& cu = sim().cu;
    REQUIRE(cu.mem_alloc(&device, sizeof(int)) == CUDA_SUCCESS);
    REQUIRE(cu.launch_host_func(stream, &Gate::wait, &gate) == CUDA_SUCCESS);
    REQUIRE(cu.launch_host_func(stream, &SlowWrite::run, &write) == CUDA_SUCCESS);
    REQUIRE(cu.memcpy_htod_async(device, &host, sizeof host, stream) == CUDA_SUCCESS);
    REQUIRE(cu.memcpy_dtoh_async(&back, device, sizeof back, stream) == CUDA_SUCCESS);
  }
  SlowRoundTrip(const SlowRoundTrip&) = delete;
  SlowRoundTrip& operator=(const SlowRoundTrip&) = delete;
  void open_gate() { gate.open.store(true, std::memory_order_release); }  // pairs with Gate::wait's acquire
};
}  // namespace

TEST_CASE("a stream runs its work in order: a copy queued after a sleeping host function sees its write",
          "[sim][stream]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  SlowRoundTrip work;
  CHECK(cu.stream_query(work.stream) == CUDA_ERROR_NOT_READY);
  work.open_gate();
  REQUIRE(cu.stream_synchronize(work.stream) == CUDA_SUCCESS);
  CHECK(work.back == 42);
  CHECK(cu.stream_query(work.stream) == CUDA_SUCCESS);
  CHECK(counters().host_functions_run == before.host_functions_run + 2);
  REQUIRE(cu.mem_free(work.device) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(work.stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("freeing memory waits for the work a destroyed stream still has queued on it", "[sim][stream]") {
  // Found by the request fuzzer: a memset queued behind a slow host function on a stream that was
  // then destroyed ran after cuMemFree had unmapped its memory. On a GPU the destroyed stream's
  // work still runs, and freeing waits for it.
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  SlowRoundTrip work;
  REQUIRE(cu.stream_destroy(work.stream) == CUDA_SUCCESS);
  CHECK(work.back == 0);  // still queued behind the gate
  work.open_gate();       // the free below comes during the slow host function
  REQUIRE(cu.mem_free(work.device) == CUDA_SUCCESS);
  CHECK(work.back == 42);  // the free came after the destroyed stream's copies
  CHECK(counters().host_functions_run == before.host_functions_run + 2);
  require_nothing_left(before);
}

TEST_CASE("an event recorded on one stream orders work waiting for it on another", "[sim][event]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream producer = make_stream();
  CUstream consumer = make_stream();
  CUevent ready = make_event(CU_EVENT_DISABLE_TIMING);
  Gate gate;
  int value = 0, seen = -1;
  SlowWrite write{&value, 7};
  REQUIRE(cu.launch_host_func(producer, &Gate::wait, &gate) == CUDA_SUCCESS);
  REQUIRE(cu.launch_host_func(producer, &SlowWrite::run, &write) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(ready, producer) == CUDA_SUCCESS);
  REQUIRE(cu.stream_wait_event(consumer, ready, 0) == CUDA_SUCCESS);
  struct Read {
    const int* from;
    int* to;
    static void run(void* data) {
      auto* self = static_cast<Read*>(data);
      *self->to = *self->from;
    }
  } read{&value, &seen};
  REQUIRE(cu.launch_host_func(consumer, &Read::run, &read) == CUDA_SUCCESS);
  CHECK(cu.event_query(ready) == CUDA_ERROR_NOT_READY);
  CHECK(cu.stream_query(consumer) == CUDA_ERROR_NOT_READY);
  gate.open.store(true, std::memory_order_release);
  REQUIRE(cu.stream_synchronize(consumer) == CUDA_SUCCESS);
  CHECK(seen == 7);
  REQUIRE(cu.event_synchronize(ready) == CUDA_SUCCESS);
  CHECK(cu.event_query(ready) == CUDA_SUCCESS);
  REQUIRE(cu.event_destroy(ready) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(producer) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(consumer) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("elapsed time spans the work between two records and needs timing and completion", "[sim][event]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  CUevent start = make_event(), end = make_event(), untimed = make_event(CU_EVENT_DISABLE_TIMING);
  float milliseconds = -1;
  CHECK(cu.event_elapsed_time(&milliseconds, start, end) == CUDA_ERROR_INVALID_HANDLE);  // never recorded
  CHECK(cu.event_query(start) == CUDA_SUCCESS);  // never recorded: complete

  Gate gate;
  int sink = 0;
  SlowWrite sleep{&sink, 1};
  REQUIRE(cu.launch_host_func(stream, &Gate::wait, &gate) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(start, stream) == CUDA_SUCCESS);
  REQUIRE(cu.launch_host_func(stream, &SlowWrite::run, &sleep) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(end, stream) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(untimed, stream) == CUDA_SUCCESS);
  CHECK(cu.event_elapsed_time(&milliseconds, start, end) == CUDA_ERROR_NOT_READY);
  gate.open.store(true, std::memory_order_release);
  REQUIRE(cu.event_synchronize(end) == CUDA_SUCCESS);
  REQUIRE(cu.event_elapsed_time(&milliseconds, start, end) == CUDA_SUCCESS);
  CHECK(milliseconds >= 45.0f);
  CHECK(milliseconds < 5000.0f);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(cu.event_elapsed_time(&milliseconds, start, untimed) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.event_elapsed_time(nullptr, start, end) == CUDA_ERROR_INVALID_VALUE);
  for (CUevent event : {start, end, untimed}) REQUIRE(cu.event_destroy(event) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

namespace {
void count_call(void* counter) { static_cast<std::atomic<int>*>(counter)->fetch_add(1); }
}  // namespace

TEST_CASE("stream capture records work without running it and each graph launch replays it", "[sim][graph]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  CUdeviceptr device = 0;
  REQUIRE(cu.mem_alloc(&device, 4096) == CUDA_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, 0, 4096, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);

  std::atomic<int> calls{0};
  std::vector<unsigned char> host(4096, 0);
  CUevent marker = make_event();
  REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  REQUIRE(cu.stream_is_capturing(stream, &status) == CUDA_SUCCESS);
  CHECK(status == CU_STREAM_CAPTURE_STATUS_ACTIVE);
  CHECK(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) != CUDA_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, 0x11, 4096, stream) == CUDA_SUCCESS);
  REQUIRE(cu.launch_host_func(stream, &count_call, &calls) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(marker, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(host.data(), device, 4096, stream) == CUDA_SUCCESS);
  CUgraph graph = nullptr;
  REQUIRE(cu.stream_end_capture(stream, &graph) == CUDA_SUCCESS);
  REQUIRE(graph != nullptr);
  REQUIRE(cu.stream_is_capturing(stream, &status) == CUDA_SUCCESS);
  CHECK(status == CU_STREAM_CAPTURE_STATUS_NONE);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(calls == 0);
  CHECK(host[0] == 0);
  CHECK(counters().bytes_memset == before.bytes_memset + 4096);  // only the memset before capture

  // The nodes read back as the driver gives them: in capture order, with their parameters.
  std::size_t count = 0;
  REQUIRE(cu.graph_get_nodes(graph, nullptr, &count) == CUDA_SUCCESS);
  REQUIRE(count == 4);
  std::vector<CUgraphNode> nodes(6, reinterpret_cast<CUgraphNode>(1));
  count = nodes.size();
  REQUIRE(cu.graph_get_nodes(graph, nodes.data(), &count) == CUDA_SUCCESS);
  CHECK(count == 4);
  CHECK(nodes[4] == nullptr);
  CHECK(nodes[5] == nullptr);
  std::vector<CUgraphNodeType> types;
  for (std::size_t i = 0; i < 4; ++i) {
    CUgraphNodeType type = -1;
    REQUIRE(cu.graph_node_get_type(nodes[i], &type) == CUDA_SUCCESS);
    types.push_back(type);
  }
  CHECK(types == std::vector<CUgraphNodeType>{CU_GRAPH_NODE_TYPE_MEMSET, CU_GRAPH_NODE_TYPE_HOST,
                                              CU_GRAPH_NODE_TYPE_EVENT_RECORD, CU_GRAPH_NODE_TYPE_MEMCPY});
  CUDA_MEMSET_NODE_PARAMS memset{};
  REQUIRE(cu.graph_memset_node_get_params(nodes[0], &memset) == CUDA_SUCCESS);
  CHECK((memset.dst == device && memset.value == 0x11 && memset.elementSize == 1 && memset.width == 4096 &&
         memset.height == 1));
  CUDA_MEMCPY3D copy{};
  REQUIRE(cu.graph_memcpy_node_get_params(nodes[3], &copy) == CUDA_SUCCESS);
  CHECK((copy.srcMemoryType == CU_MEMORYTYPE_DEVICE && copy.srcDevice == device &&
         copy.dstMemoryType == CU_MEMORYTYPE_HOST && copy.dstHost == host.data() && copy.WidthInBytes == 4096 &&
         copy.Height == 1 && copy.Depth == 1));
  CHECK(cu.graph_memcpy_node_get_params(nodes[0], &copy) == CUDA_ERROR_INVALID_VALUE);  // a memset node
  CHECK(cu.graph_node_get_type(reinterpret_cast<CUgraphNode>(0x12345), &types[0]) == CUDA_ERROR_INVALID_VALUE);

  CUgraphExec exec = nullptr;
  REQUIRE(cu.graph_instantiate(&exec, graph, 0) == CUDA_SUCCESS);
  REQUIRE(cu.graph_launch(exec, stream) == CUDA_SUCCESS);
  REQUIRE(cu.graph_launch(exec, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(calls == 2);
  CHECK(std::all_of(host.begin(), host.end(), [](unsigned char c) { return c == 0x11; }));
  CHECK(cu.event_query(marker) == CUDA_SUCCESS);

  REQUIRE(cu.graph_exec_destroy(exec) == CUDA_SUCCESS);
  REQUIRE(cu.graph_destroy(graph) == CUDA_SUCCESS);
  CHECK(cu.graph_destroy(graph) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.event_destroy(marker) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(device) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("querying or synchronizing a capturing stream invalidates the capture", "[sim][graph]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  CHECK(cu.stream_begin_capture(nullptr, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  for (bool synchronize : {false, true}) {
    REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_RELAXED) == CUDA_SUCCESS);
    CHECK((synchronize ? cu.stream_synchronize(stream) : cu.stream_query(stream)) ==
          CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
    REQUIRE(cu.stream_is_capturing(stream, &status) == CUDA_SUCCESS);
    CHECK(status == CU_STREAM_CAPTURE_STATUS_INVALIDATED);
    std::atomic<int> calls{0};
    CHECK(cu.launch_host_func(stream, &count_call, &calls) == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    CUgraph graph = reinterpret_cast<CUgraph>(0x1234);
    CHECK(cu.stream_end_capture(stream, &graph) == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
    CHECK(graph == nullptr);
  }
  CUgraph graph = nullptr;
  CHECK(cu.stream_end_capture(stream, &graph) != CUDA_SUCCESS);  // not capturing
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

namespace {
CUgraph capture_memset(CUstream stream, CUdeviceptr device, unsigned char value, std::size_t bytes) {
  DriverTable& cu = sim().cu;
  REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, value, bytes, stream) == CUDA_SUCCESS);
  CUgraph graph = nullptr;
  REQUIRE(cu.stream_end_capture(stream, &graph) == CUDA_SUCCESS);
  return graph;
}
}  // namespace

TEST_CASE("updating an exec from a graph of the same shape makes later launches use the new parameters",
          "[sim][graph]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  CUdeviceptr device = 0;
  REQUIRE(cu.mem_alloc(&device, 1024) == CUDA_SUCCESS);
  CUgraph first = capture_memset(stream, device, 1, 1024);
  CUgraph second = capture_memset(stream, device, 2, 512);
  CUgraphExec exec = nullptr;
  REQUIRE(cu.graph_instantiate(&exec, first, 0) == CUDA_SUCCESS);

  CUgraphExecUpdateResultInfo info{};
  REQUIRE(cu.graph_exec_update(exec, second, &info) == CUDA_SUCCESS);
  CHECK(info.result == CU_GRAPH_EXEC_UPDATE_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, 0, 1024, stream) == CUDA_SUCCESS);
  REQUIRE(cu.graph_launch(exec, stream) == CUDA_SUCCESS);
  std::vector<unsigned char> host(1024, 9);
  REQUIRE(cu.memcpy_dtoh_async(host.data(), device, 1024, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(host[0] == 2);
  CHECK(host[511] == 2);
  CHECK(host[512] == 0);

  // A different shape: two nodes instead of one.
  REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, 3, 16, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memset_d8_async(device, 4, 16, stream) == CUDA_SUCCESS);
  CUgraph bigger = nullptr;
  REQUIRE(cu.stream_end_capture(stream, &bigger) == CUDA_SUCCESS);
  CHECK(cu.graph_exec_update(exec, bigger, &info) == CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE);
  CHECK(info.result == CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED);
  // A different node kind in the same place.
  REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  std::atomic<int> calls{0};
  REQUIRE(cu.launch_host_func(stream, &count_call, &calls) == CUDA_SUCCESS);
  CUgraph other_kind = nullptr;
  REQUIRE(cu.stream_end_capture(stream, &other_kind) == CUDA_SUCCESS);
  CHECK(cu.graph_exec_update(exec, other_kind, &info) == CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE);
  CHECK(info.result == CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED);

  // A replay whose memory was freed is refused rather than run.
  REQUIRE(cu.mem_free(device) == CUDA_SUCCESS);
  CHECK(cu.graph_launch(exec, stream) == CUDA_ERROR_INVALID_VALUE);

  for (CUgraph graph : {first, second, bigger, other_kind}) REQUIRE(cu.graph_destroy(graph) == CUDA_SUCCESS);
  REQUIRE(cu.graph_exec_destroy(exec) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("virtual memory: reserve, create, map, set access, copy, unmap, release and free", "[sim][vmm]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  std::size_t granularity = 0;
  REQUIRE(cu.mem_get_allocation_granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) ==
          CUDA_SUCCESS);
  CHECK(granularity == 2u << 20);
  REQUIRE(cu.mem_get_allocation_granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) ==
          CUDA_SUCCESS);
  CHECK(granularity == 2u << 20);

  std::size_t free_before = 0, total = 0;
  REQUIRE(cu.mem_get_info(&free_before, &total) == CUDA_SUCCESS);
  const std::size_t size = 2 * granularity;
  CUdeviceptr base = 0;
  REQUIRE(cu.mem_address_reserve(&base, 2 * size, std::size_t{1} << 24, 0, 0) == CUDA_SUCCESS);
  CHECK(base % (std::size_t{1} << 24) == 0);
  CUmemGenericAllocationHandle handle = 0;
  REQUIRE(cu.mem_create(&handle, size, &prop, 0) == CUDA_SUCCESS);
  std::size_t free_now = 0;
  REQUIRE(cu.mem_get_info(&free_now, &total) == CUDA_SUCCESS);
  CHECK(free_before - free_now == size);

  // Mapped twice (both halves of the reservation show the same memory).
  REQUIRE(cu.mem_map(base, size, 0, handle, 0) == CUDA_SUCCESS);
  REQUIRE(cu.mem_map(base + size, size, 0, handle, 0) == CUDA_SUCCESS);
  CHECK(cu.mem_map(base, size, 0, handle, 0) == CUDA_ERROR_INVALID_VALUE);  // already mapped
  std::vector<unsigned char> data = pattern(size, 3), back(size, 0);
  CUstream stream = make_stream();
  CHECK(cu.memcpy_htod_async(base, data.data(), size, stream) == CUDA_ERROR_INVALID_VALUE);  // no access yet
  CUmemAccessDesc access{{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
  REQUIRE(cu.mem_set_access(base, 2 * size, &access, 1) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_htod_async(base, data.data(), size, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(back.data(), base + size, size, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(checksum(back) == checksum(data));
  // A copy across the boundary of two mappings is one contiguous range.
  REQUIRE(cu.memcpy_dtoh_async(back.data(), base + size - 4096, 8192, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);

  CHECK(cu.mem_address_free(base, 2 * size) == CUDA_ERROR_INVALID_VALUE);  // still mapped
  REQUIRE(cu.mem_release(handle) == CUDA_SUCCESS);
  CHECK(cu.mem_release(handle) == CUDA_ERROR_INVALID_VALUE);
  CHECK(counters().live_allocation_bytes == before.live_allocation_bytes + size);  // still mapped
  REQUIRE(cu.mem_unmap(base, size) == CUDA_SUCCESS);
  CHECK(cu.mem_unmap(base, size) == CUDA_ERROR_INVALID_VALUE);
  CHECK(counters().live_allocation_bytes == before.live_allocation_bytes + size);  // one mapping left
  REQUIRE(cu.mem_unmap(base + size, size) == CUDA_SUCCESS);
  CHECK(counters().live_allocation_bytes == before.live_allocation_bytes);
  CHECK(cu.memcpy_dtoh_async(back.data(), base, 16, stream) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.mem_address_free(base, 2 * size) == CUDA_SUCCESS);
  REQUIRE(cu.mem_get_info(&free_now, &total) == CUDA_SUCCESS);
  CHECK(free_now == free_before);

  CUdeviceptr unused = 0;
  CHECK(cu.mem_address_reserve(&unused, 1000, 0, 0, 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.mem_create(&handle, 1000, &prop, 0) == CUDA_ERROR_INVALID_VALUE);
  prop.location.id = 5;
  CHECK(cu.mem_create(&handle, size, &prop, 0) == CUDA_ERROR_INVALID_DEVICE);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("host registration refuses overlaps and unknown pointers", "[sim][memory]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  std::vector<unsigned char> buffer(1 << 16);
  REQUIRE(cu.mem_host_register(buffer.data(), 4096, CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS);
  CHECK(cu.mem_host_register(buffer.data(), 4096, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
  CHECK(cu.mem_host_register(buffer.data() + 100, 10, 0) == CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
  REQUIRE(cu.mem_host_register(buffer.data() + 4096, 4096, CU_MEMHOSTREGISTER_DEVICEMAP) == CUDA_SUCCESS);
  CHECK(counters().live_host_registrations == before.live_host_registrations + 2);
  CHECK(cu.mem_host_unregister(buffer.data() + 1) == CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
  CHECK(cu.mem_host_register(nullptr, 4096, 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.mem_host_register(buffer.data() + 8192, 0, 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.mem_host_register(buffer.data() + 8192, 16, 0x100) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(cu.mem_host_unregister(buffer.data()) == CUDA_SUCCESS);
  CHECK(cu.mem_host_unregister(buffer.data()) == CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
  REQUIRE(cu.mem_host_unregister(buffer.data() + 4096) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("stale and made-up handles are refused with an error, never a crash", "[sim][handles]") {
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUstream stream = make_stream();
  CUevent event = make_event();
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  REQUIRE(cu.event_destroy(event) == CUDA_SUCCESS);
  auto bogus_stream = reinterpret_cast<CUstream>(0x7777);
  auto bogus_event = reinterpret_cast<CUevent>(0x4242);
  for (CUstream bad : {stream, bogus_stream}) {
    CHECK(cu.stream_synchronize(bad) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.stream_query(bad) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.stream_destroy(bad) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.launch_host_func(bad, &count_call, nullptr) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.stream_begin_capture(bad, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_ERROR_INVALID_HANDLE);
  }
  for (CUevent bad : {event, bogus_event}) {
    CHECK(cu.event_query(bad) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.event_synchronize(bad) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.event_record(bad, nullptr) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.stream_wait_event(nullptr, bad, 0) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.event_destroy(bad) == CUDA_ERROR_INVALID_HANDLE);
  }
  auto bogus_function = reinterpret_cast<CUfunction>(0x1000);
  int value = 0;
  std::size_t offset = 0, size = 0;
  CHECK(cu.func_get_attribute(&value, CU_FUNC_ATTRIBUTE_NUM_REGS, bogus_function) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.func_get_param_info(bogus_function, 0, &offset, &size) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.launch_kernel(bogus_function, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr) ==
        CUDA_ERROR_INVALID_HANDLE);
  CUfunction function = nullptr;
  CHECK(cu.module_get_function(&function, reinterpret_cast<CUmodule>(0x55), "f") == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.module_unload(reinterpret_cast<CUmodule>(0x55)) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.graph_launch(reinterpret_cast<CUgraphExec>(0x99), nullptr) == CUDA_ERROR_INVALID_HANDLE);
  CUgraphExec exec = nullptr;
  CHECK(cu.graph_instantiate(&exec, reinterpret_cast<CUgraph>(0x99), 0) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.ctx_set_current(reinterpret_cast<CUcontext>(0x1234)) == CUDA_ERROR_INVALID_CONTEXT);
  CHECK(cu.mem_release(0xabcdef) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.module_load_data(nullptr, "x") == CUDA_ERROR_INVALID_VALUE);
  CUmodule module = nullptr;
  CHECK(cu.module_load_data(&module, "this is not an image") == CUDA_ERROR_INVALID_IMAGE);
  // A container header whose header_size is below 16, then an entry header whose size is absurd.
  std::vector<unsigned char> container = {0x50, 0xED, 0x55, 0xBA, 1, 0, 8, 0, 64, 0, 0, 0, 0, 0, 0, 0};
  container.resize(128, 0);
  CHECK(cu.module_load_data(&module, container.data()) == CUDA_ERROR_INVALID_IMAGE);
  container[6] = 16;
  container[16] = 2;                              // entry kind: cubin
  container[20] = 0xFF;  // entry header_size 65535: past the container
  container[21] = 0xFF;
  CHECK(cu.module_load_data(&module, container.data()) == CUDA_ERROR_INVALID_IMAGE);

  // Without a current context the NULL stream has no owner.
  REQUIRE(cu.ctx_set_current(nullptr) == CUDA_SUCCESS);
  CHECK(cu.stream_synchronize(nullptr) == CUDA_ERROR_INVALID_CONTEXT);
  CHECK(cu.ctx_synchronize() == CUDA_ERROR_INVALID_CONTEXT);
  sim();  // current again
  require_nothing_left(before);
}

TEST_CASE("every CUresult of cuda.h has a name and a description; unknown codes have neither", "[sim][errors]") {
  DriverTable& cu = sim().cu;
  const CUresult known[] = {0, 1, 2, 3, 4, 100, 101, 200, 209, 218, 400, 401, 500, 600, 700, 712, 713,
                            719, 800, 801, 900, 901, 910, 916, 999};
  for (CUresult code : known) {
    const char* name = nullptr;
    const char* text = nullptr;
    INFO("code " << code);
    REQUIRE(cu.get_error_name(code, &name) == CUDA_SUCCESS);
    REQUIRE(cu.get_error_string(code, &text) == CUDA_SUCCESS);
    CHECK(std::string(name).rfind("CUDA_", 0) == 0);
    CHECK(std::strlen(text) > 0);
  }
  const char* name = nullptr;
  const char* text = nullptr;
  REQUIRE(cu.get_error_name(CUDA_ERROR_INVALID_VALUE, &name) == CUDA_SUCCESS);
  CHECK(std::string(name) == "CUDA_ERROR_INVALID_VALUE");
  REQUIRE(cu.get_error_string(CUDA_ERROR_INVALID_VALUE, &text) == CUDA_SUCCESS);
  CHECK(std::string(text) == "invalid argument");
  name = text = "stale";
  CHECK(cu.get_error_name(12345, &name) == CUDA_ERROR_INVALID_VALUE);
  CHECK(name == nullptr);
  CHECK(cu.get_error_string(12345, &text) == CUDA_ERROR_INVALID_VALUE);
  CHECK(text == nullptr);
}

TEST_CASE("many threads create, use and destroy objects at once", "[sim][threads]") {
  const GpubrokerSimCounters before = counters();
  CUcontext context = sim().context;
  DriverTable& cu = sim().cu;  // resolved here: Catch2 assertions are not for other threads
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      if (cu.ctx_set_current(context) != CUDA_SUCCESS) ++failures;
      for (int round = 0; round < 20; ++round) {
        CUstream stream = nullptr;
        CUdeviceptr device = 0;
        CUevent event = nullptr;
        std::vector<unsigned char> data = pattern(4096, static_cast<unsigned>(t * 100 + round)), back(4096);
        if (cu.stream_create_with_priority(&stream, CU_STREAM_NON_BLOCKING, 0) != CUDA_SUCCESS ||
            cu.mem_alloc(&device, 4096) != CUDA_SUCCESS || cu.event_create(&event, 0) != CUDA_SUCCESS ||
            cu.memcpy_htod_async(device, data.data(), 4096, stream) != CUDA_SUCCESS ||
            cu.memcpy_dtoh_async(back.data(), device, 4096, stream) != CUDA_SUCCESS ||
            cu.event_record(event, stream) != CUDA_SUCCESS || cu.event_synchronize(event) != CUDA_SUCCESS ||
            back != data || cu.mem_free(device) != CUDA_SUCCESS || cu.event_destroy(event) != CUDA_SUCCESS ||
            cu.stream_destroy(stream) != CUDA_SUCCESS)
          ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == 0);
  require_nothing_left(before);
}

// ---- Modules and kernels (need nvcc to build the images) -------------------------------------------

namespace {

struct TestModule {
  CUmodule module = nullptr;
  std::vector<unsigned char> image;
};

// The module and launch cases load the fatbins nvcc builds from sim_kernels.cu: tagged [nvcc] (a
// meson test of their own), and skipped where nvcc was not found at configure time.
#define SKIP_WITHOUT_IMAGES()                                                          \
  do {                                                                                 \
    if (!SIM_HAVE_NVCC) SKIP_CASE("nvcc was not found at configure time: no fatbins"); \
  } while (false)

std::string image_path(const char* name) { return std::string(SIM_TEST_IMAGE_DIR) + "/" + name; }

CUfunction get_function(CUmodule module, const char* name) {
  CUfunction function = nullptr;
  REQUIRE(sim().cu.module_get_function(&function, module, name) == CUDA_SUCCESS);
  return function;
}

// The test kernels' fatbin (tests/data), loaded into the current context.
CUmodule load_sim_kernels() {
  std::vector<unsigned char> image = read_file(image_path("sim_kernels_sm90.fatbin"));
  CUmodule module = nullptr;
  REQUIRE(sim().cu.module_load_data(&module, image.data()) == CUDA_SUCCESS);
  return module;
}

}  // namespace

TEST_CASE("a kernel launch runs its plugin implementation with parameters from kernelParams or extra",
          "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  std::vector<unsigned char> image = read_file(image_path("sim_kernels_sm90.fatbin"));
  REQUIRE(!image.empty());
  CUmodule module = nullptr;
  REQUIRE(cu.module_load_data(&module, image.data()) == CUDA_SUCCESS);
  CUfunction vector_add = get_function(module, "_Z10vector_addPKfS0_Pfi");
  CUfunction affine = get_function(module, "_Z6affinePf6Affinei");
  CUfunction again = get_function(module, "_Z10vector_addPKfS0_Pfi");
  CHECK(again == vector_add);
  CUfunction missing = nullptr;
  CHECK(cu.module_get_function(&missing, module, "_Z7missingv") == CUDA_ERROR_NOT_FOUND);

  constexpr int n = 1000;
  std::vector<float> a(n), b(n), out(n, 0);
  std::iota(a.begin(), a.end(), 0.0f);
  std::iota(b.begin(), b.end(), 1000.0f);
  CUdeviceptr da = 0, db = 0, dout = 0;
  REQUIRE(cu.mem_alloc(&da, n * sizeof(float)) == CUDA_SUCCESS);
  REQUIRE(cu.mem_alloc(&db, n * sizeof(float)) == CUDA_SUCCESS);
  REQUIRE(cu.mem_alloc(&dout, n * sizeof(float)) == CUDA_SUCCESS);
  CUstream stream = make_stream();
  REQUIRE(cu.memcpy_htod_async(da, a.data(), n * sizeof(float), stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_htod_async(db, b.data(), n * sizeof(float), stream) == CUDA_SUCCESS);

  SECTION("kernelParams: one pointer per argument") {
    int count = n;
    void* params[] = {&da, &db, &dout, &count};
    REQUIRE(cu.launch_kernel(vector_add, (n + 255) / 256, 1, 1, 256, 1, 1, 0, stream, params, nullptr) ==
            CUDA_SUCCESS);
  }
  SECTION("extra: one packed buffer of exactly the kernel's parameter size") {
    struct {
      CUdeviceptr a, b, out;
      int n;
    } packed{da, db, dout, n};
    std::size_t size = 28;  // param_bytes: the end of the last parameter, not rounded up
    void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                     CU_LAUNCH_PARAM_END};
    std::size_t wrong = sizeof packed;
    void* wrong_extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE, &wrong,
                           CU_LAUNCH_PARAM_END};
    CHECK(cu.launch_kernel(vector_add, 4, 1, 1, 256, 1, 1, 0, stream, nullptr, wrong_extra) ==
          CUDA_ERROR_INVALID_VALUE);
    REQUIRE(cu.launch_kernel(vector_add, 4, 1, 1, 256, 1, 1, 0, stream, nullptr, extra) == CUDA_SUCCESS);
  }
  REQUIRE(cu.memcpy_dtoh_async(out.data(), dout, n * sizeof(float), stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  bool sums = true;
  for (int i = 0; i < n; ++i) sums &= out[i] == a[i] + b[i];
  CHECK(sums);
  CHECK(counters().kernels_launched == before.kernels_launched + 1);

  // A struct parameter after a pointer lands at its 8-byte aligned offset.
  std::size_t offset = 0, size = 0;
  REQUIRE(cu.func_get_param_info(affine, 1, &offset, &size) == CUDA_SUCCESS);
  CHECK(offset == 8);
  CHECK(size == 16);
  CHECK(cu.func_get_param_info(affine, 3, &offset, &size) == CUDA_ERROR_INVALID_VALUE);
  struct Affine {
    float scale;
    double offset;
  } transform{2.0f, 0.5};
  int count = 4;
  void* params[] = {&da, &transform, &count};
  REQUIRE(cu.launch_kernel(affine, 1, 1, 1, 32, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
  float first[4] = {};
  REQUIRE(cu.memcpy_dtoh_async(first, da, sizeof first, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(first[0] == 0.5f);
  CHECK(first[3] == 6.5f);

  // Launch checks.
  CHECK(cu.launch_kernel(affine, 1, 1, 1, 2048, 1, 1, 0, stream, params, nullptr) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.launch_kernel(affine, 0, 1, 1, 32, 1, 1, 0, stream, params, nullptr) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.launch_kernel(affine, 1, 1, 1, 32, 1, 1, 100000, stream, params, nullptr) == CUDA_ERROR_INVALID_VALUE);
  CHECK(cu.launch_kernel(affine, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr) == CUDA_ERROR_INVALID_VALUE);

  for (CUdeviceptr pointer : {da, db, dout}) REQUIRE(cu.mem_free(pointer) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  CHECK(cu.launch_kernel(vector_add, 1, 1, 1, 1, 1, 1, 0, stream, nullptr, nullptr) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.module_unload(module) == CUDA_ERROR_INVALID_HANDLE);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("a captured kernel launch replays, and an exec update gives it new arguments", "[sim][module][graph][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction fill = get_function(module, "_Z4fillPffi");
  CUstream stream = make_stream();
  CUdeviceptr device = 0;
  REQUIRE(cu.mem_alloc(&device, 64 * sizeof(float)) == CUDA_SUCCESS);
  auto capture_fill = [&](float value) {
    int n = 64;
    void* params[] = {&device, &value, &n};
    REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
    REQUIRE(cu.launch_kernel(fill, 1, 1, 1, 64, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
    CUgraph graph = nullptr;
    REQUIRE(cu.stream_end_capture(stream, &graph) == CUDA_SUCCESS);
    return graph;
  };
  CUgraph ones = capture_fill(1.0f);
  CUgraph sevens = capture_fill(7.0f);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(counters().kernels_launched == before.kernels_launched);
  CUgraphExec exec = nullptr;
  REQUIRE(cu.graph_instantiate(&exec, ones, 0) == CUDA_SUCCESS);
  float value = 0;
  REQUIRE(cu.graph_launch(exec, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(&value, device + 63 * sizeof(float), sizeof value, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(value == 1.0f);
  CUgraphExecUpdateResultInfo info{};
  REQUIRE(cu.graph_exec_update(exec, sevens, &info) == CUDA_SUCCESS);
  REQUIRE(cu.graph_launch(exec, stream) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(&value, device + 63 * sizeof(float), sizeof value, stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(value == 7.0f);

  // Another kernel in the same place is a function change.
  CUfunction vector_add = get_function(module, "_Z10vector_addPKfS0_Pfi");
  int n = 0;
  void* params[] = {&device, &device, &device, &n};
  REQUIRE(cu.stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  REQUIRE(cu.launch_kernel(vector_add, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
  CUgraph other = nullptr;
  REQUIRE(cu.stream_end_capture(stream, &other) == CUDA_SUCCESS);
  CHECK(cu.graph_exec_update(exec, other, &info) == CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE);
  CHECK(info.result == CU_GRAPH_EXEC_UPDATE_ERROR_FUNCTION_CHANGED);

  for (CUgraph graph : {ones, sevens, other}) REQUIRE(cu.graph_destroy(graph) == CUDA_SUCCESS);
  REQUIRE(cu.graph_exec_destroy(exec) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(device) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("a kernel reaches its own context's memory only; copies reach every context's", "[sim][context][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  DriverTable& cu = sim().cu;
  CUcontext primary = nullptr;
  REQUIRE(cu.ctx_get_current(&primary) == CUDA_SUCCESS);
  constexpr int n = 256;
  const std::vector<float> ones(n, 1.0f);
  CUdeviceptr theirs = 0;  // the primary context's: another user's memory
  REQUIRE(cu.mem_alloc(&theirs, n * sizeof(float)) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_htod_async(theirs, ones.data(), n * sizeof(float), nullptr) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);

  const std::vector<unsigned char> image = read_file(image_path("sim_kernels_sm90.fatbin"));
  // From here on no helper that calls sim(), which makes the primary context current again.
  CUcontext mine = nullptr;
  REQUIRE(cu.ctx_create(&mine, 0, 0) == CUDA_SUCCESS);
  CUcontext current = nullptr;
  REQUIRE(cu.ctx_get_current(&current) == CUDA_SUCCESS);
  CHECK(current == mine);  // pushed
  CUmodule module = nullptr;
  REQUIRE(cu.module_load_data(&module, image.data()) == CUDA_SUCCESS);
  CUfunction vector_add = nullptr;
  REQUIRE(cu.module_get_function(&vector_add, module, "_Z10vector_addPKfS0_Pfi") == CUDA_SUCCESS);
  CUdeviceptr a = 0, out = 0;
  REQUIRE(cu.mem_alloc(&a, n * sizeof(float)) == CUDA_SUCCESS);
  REQUIRE(cu.mem_alloc(&out, n * sizeof(float)) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_htod_async(a, ones.data(), n * sizeof(float), nullptr) == CUDA_SUCCESS);
  int count = n;
  {
    void* params[] = {&a, &a, &out, &count};  // all its own
    REQUIRE(cu.launch_kernel(vector_add, 1, 1, 1, n, 1, 1, 0, nullptr, params, nullptr) == CUDA_SUCCESS);
    REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
    float value = 0;
    REQUIRE(cu.memcpy_dtoh_async(&value, out + 10 * sizeof(float), sizeof value, nullptr) == CUDA_SUCCESS);
    REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
    CHECK(value == 2.0f);
  }
  // A copy names both by address, as unified addressing allows (the broker's checks govern those).
  REQUIRE(cu.memcpy_dtod_async(out, theirs, n * sizeof(float), nullptr) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
  CUstream stream = nullptr;
  REQUIRE(cu.stream_create_with_priority(&stream, CU_STREAM_NON_BLOCKING, 0) == CUDA_SUCCESS);
  {
    void* params[] = {&a, &theirs, &out, &count};  // reads the other context's memory
    REQUIRE(cu.launch_kernel(vector_add, 1, 1, 1, n, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
    CHECK(cu.stream_synchronize(stream) == CUDA_ERROR_ILLEGAL_ADDRESS);
  }
  {
    CUstream clean = nullptr;
    REQUIRE(cu.stream_create_with_priority(&clean, CU_STREAM_NON_BLOCKING, 0) == CUDA_SUCCESS);
    void* params[] = {&a, &a, &theirs, &count};  // writes it
    REQUIRE(cu.launch_kernel(vector_add, 1, 1, 1, n, 1, 1, 0, clean, params, nullptr) == CUDA_SUCCESS);
    CHECK(cu.stream_synchronize(clean) == CUDA_ERROR_ILLEGAL_ADDRESS);
    CHECK(cu.stream_destroy(clean) == CUDA_SUCCESS);
  }

  CUcontext popped = nullptr;
  REQUIRE(cu.ctx_pop_current(&popped) == CUDA_SUCCESS);
  CHECK(popped == mine);
  REQUIRE(cu.ctx_get_current(&current) == CUDA_SUCCESS);
  CHECK(current == primary);
  CHECK(cu.ctx_synchronize() == CUDA_SUCCESS);  // the faults were the other context's
  std::vector<float> back(n, 0);  // the other context's memory is untouched
  REQUIRE(cu.memcpy_dtoh_async(back.data(), theirs, n * sizeof(float), nullptr) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
  CHECK(back == ones);
  REQUIRE(cu.mem_free(theirs) == CUDA_SUCCESS);

  REQUIRE(cu.ctx_set_current(mine) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(a) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(out) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  (void)cu.stream_destroy(stream);
  REQUIRE(cu.ctx_set_current(primary) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_destroy(mine) == CUDA_SUCCESS);
  CHECK(cu.ctx_set_current(mine) == CUDA_ERROR_INVALID_CONTEXT);  // gone
  CHECK(cu.ctx_destroy(primary) == CUDA_ERROR_INVALID_CONTEXT);   // not cuCtxCreate's
}

TEST_CASE("a launch of a kernel without a host implementation fails and names the kernel", "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction function = get_function(module, "_Z17never_implementedPi");
  CUdeviceptr device = 0;
  REQUIRE(cu.mem_alloc(&device, 64) == CUDA_SUCCESS);
  void* params[] = {&device};
  // The log line goes to stderr: "sim: no host implementation for kernel '_Z17never_implementedPi'".
  CHECK(cu.launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr) == CUDA_ERROR_LAUNCH_FAILED);
  CHECK(cu.ctx_synchronize() == CUDA_SUCCESS);  // nothing was queued: the context is not faulted

  // Registered later, directly: the next launch runs it.
  static std::atomic<int> runs{0};
  sim().loaded.register_kernel("_Z17never_implementedPi", [](const GpubrokerSimLaunch* launch) {
    runs.fetch_add(1);
    return std::strcmp(launch->kernel_name, "_Z17never_implementedPi") == 0 ? 0 : 1;
  });
  REQUIRE(cu.launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
  CHECK(runs == 1);
  REQUIRE(cu.mem_free(device) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  require_nothing_left(before);
}

// Found by a hostile review: a GEMM whose packed operands did not fit in host memory threw
// std::bad_alloc on a stream's worker thread, and the exception ended the broker. Any operation
// that throws now faults its own stream instead.
TEST_CASE("an operation that throws faults its stream with an error; the process goes on", "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction function = get_function(module, "_Z17never_implementedPi");
  sim().loaded.register_kernel("_Z17never_implementedPi", [](const GpubrokerSimLaunch*) -> int {
    throw std::bad_alloc();
  });
  CUdeviceptr device = 0;
  REQUIRE(cu.mem_alloc(&device, 64) == CUDA_SUCCESS);
  void* params[] = {&device};
  CUstream stream = nullptr;
  REQUIRE(cu.stream_create_with_priority(&stream, CU_STREAM_NON_BLOCKING, 0) == CUDA_SUCCESS);
  const CUresult launched = cu.launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr);
  CHECK((launched == CUDA_SUCCESS || launched == CUDA_ERROR_OUT_OF_MEMORY));
  CHECK(cu.stream_synchronize(stream) == CUDA_ERROR_OUT_OF_MEMORY);  // the stream's sticky error
  CHECK(cu.mem_free(device) == CUDA_SUCCESS);
  CHECK(cu.stream_destroy(stream) == CUDA_SUCCESS);
  CHECK(cu.module_unload(module) == CUDA_SUCCESS);
}

TEST_CASE("kernels keep stream order whether the stream is idle (run in the launching thread) or busy (queued)",
          "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction fill = get_function(module, "_Z4fillPffi");
  CUstream stream = make_stream();
  constexpr int n = 256;
  CUdeviceptr data = 0;
  REQUIRE(cu.mem_alloc(&data, n * sizeof(float)) == CUDA_SUCCESS);
  auto launch_fill = [&](float value) {
    int count = n;
    void* params[] = {&data, &value, &count};
    return cu.launch_kernel(fill, 1, 1, 1, n, 1, 1, 0, stream, params, nullptr);
  };
  std::vector<float> seen(n, 0.0f);
  // Idle stream: the fill is done when the launch returns; the copy queued after it sees it.
  REQUIRE(launch_fill(1.0f) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(seen.data(), data, n * sizeof(float), stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK((seen.front() == 1.0f && seen.back() == 1.0f));
  // Busy stream: fills queued behind a sleeping host function run after it, in their order.
  int host = 0;
  SlowWrite write{&host, 7};
  REQUIRE(cu.launch_host_func(stream, &SlowWrite::run, &write) == CUDA_SUCCESS);
  REQUIRE(launch_fill(2.0f) == CUDA_SUCCESS);
  REQUIRE(launch_fill(3.0f) == CUDA_SUCCESS);
  CHECK(cu.stream_query(stream) == CUDA_ERROR_NOT_READY);
  REQUIRE(cu.memcpy_dtoh_async(seen.data(), data, n * sizeof(float), stream) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(host == 7);
  CHECK((seen.front() == 3.0f && seen.back() == 3.0f));
  // Many threads launching on one stream at once: every launch runs exactly once. Each thread makes
  // the stream's context current first, as a launch needs it to be.
  const std::uint64_t launched = counters().kernels_launched;
  const CUcontext context = sim().context;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      (void)cu.ctx_set_current(context);
      for (int i = 0; i < 500; ++i) (void)launch_fill(4.0f);
    });
  }
  for (std::thread& t : threads) t.join();
  REQUIRE(cu.stream_synchronize(stream) == CUDA_SUCCESS);
  CHECK(counters().kernels_launched == launched + 2000);
  REQUIRE(cu.mem_free(data) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("an error returned by a kernel implementation is reported by the stream from then on",
          "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction fail_with = get_function(module, "_Z9fail_withi");
  CUstream stream = make_stream();
  int code = CUDA_ERROR_ILLEGAL_ADDRESS;
  void* params[] = {&code};
  REQUIRE(cu.launch_kernel(fail_with, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
  CHECK(cu.stream_synchronize(stream) == CUDA_ERROR_ILLEGAL_ADDRESS);
  CHECK(cu.stream_query(stream) == CUDA_ERROR_ILLEGAL_ADDRESS);
  CHECK(cu.ctx_synchronize() == CUDA_ERROR_ILLEGAL_ADDRESS);
  std::atomic<int> calls{0};
  CHECK(cu.launch_host_func(stream, &count_call, &calls) == CUDA_ERROR_ILLEGAL_ADDRESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  CHECK(cu.ctx_synchronize() == CUDA_SUCCESS);  // sticky per stream: gone with it
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  require_nothing_left(before);
}

// The broker waits for a session's streams with events (its completion poller): an event recorded
// behind a kernel that then faults must report the fault, as an event of a poisoned CUDA context
// does, or a cudaDeviceSynchronize answered by it says success (a flaky isolation test found it).
TEST_CASE("an event recorded behind a kernel that faults reports the fault", "[sim][module][launch][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  CUmodule module = load_sim_kernels();
  CUfunction fail_with = get_function(module, "_Z9fail_withi");
  CUstream stream = make_stream();
  // Everything below is queued before any of it runs: the host function holds the stream.
  std::atomic<bool> release{false};
  REQUIRE(cu.launch_host_func(stream, [](void* flag) { while (!static_cast<std::atomic<bool>*>(flag)->load()) std::this_thread::yield(); },
                              &release) == CUDA_SUCCESS);
  int code = CUDA_ERROR_ILLEGAL_ADDRESS;
  void* params[] = {&code};
  REQUIRE(cu.launch_kernel(fail_with, 1, 1, 1, 1, 1, 1, 0, stream, params, nullptr) == CUDA_SUCCESS);
  CUevent event = nullptr;
  REQUIRE(cu.event_create(&event, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS);
  REQUIRE(cu.event_record(event, stream) == CUDA_SUCCESS);
  CHECK(cu.event_query(event) == CUDA_ERROR_NOT_READY);
  release = true;
  CHECK(cu.event_synchronize(event) == CUDA_ERROR_ILLEGAL_ADDRESS);
  CHECK(cu.event_query(event) == CUDA_ERROR_ILLEGAL_ADDRESS);
  CHECK(cu.stream_synchronize(stream) == CUDA_ERROR_ILLEGAL_ADDRESS);
  REQUIRE(cu.event_destroy(event) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream) == CUDA_SUCCESS);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  require_nothing_left(before);
}

TEST_CASE("module introspection: parameter info, function attributes, occupancy and device globals",
          "[sim][module][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  for (const char* name : {"sim_kernels_sm90.fatbin", "sim_kernels_sm90.cubin"}) {
    INFO(name);
    std::vector<unsigned char> image = read_file(image_path(name));
    CUmodule module = nullptr;
    REQUIRE(cu.module_load_data(&module, image.data()) == CUDA_SUCCESS);
    CUfunction vector_add = get_function(module, "_Z10vector_addPKfS0_Pfi");
    std::size_t offset = 0, size = 0;
    REQUIRE(cu.func_get_param_info(vector_add, 3, &offset, &size) == CUDA_SUCCESS);
    CHECK(offset == 24);
    CHECK(size == 4);
    CHECK(cu.func_get_param_info(vector_add, 4, &offset, &size) == CUDA_ERROR_INVALID_VALUE);

    int value = 0;
    REQUIRE(cu.func_get_attribute(&value, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, vector_add) == CUDA_SUCCESS);
    CHECK(value == 1024);
    REQUIRE(cu.func_get_attribute(&value, CU_FUNC_ATTRIBUTE_NUM_REGS, vector_add) == CUDA_SUCCESS);
    CHECK(value == 32);
    REQUIRE(cu.func_get_attribute(&value, CU_FUNC_ATTRIBUTE_BINARY_VERSION, vector_add) == CUDA_SUCCESS);
    CHECK(value == 90);
    CHECK(cu.func_set_attribute(vector_add, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 232449) ==
          CUDA_ERROR_INVALID_VALUE);
    REQUIRE(cu.func_set_attribute(vector_add, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 232448) ==
            CUDA_SUCCESS);
    REQUIRE(cu.func_get_attribute(&value, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, vector_add) ==
            CUDA_SUCCESS);
    CHECK(value == 232448);
    CHECK(cu.func_set_attribute(vector_add, CU_FUNC_ATTRIBUTE_NUM_REGS, 64) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cu.func_get_attribute(&value, 16, vector_add) == CUDA_ERROR_INVALID_VALUE);
    REQUIRE(cu.func_set_cache_config(vector_add, 1) == CUDA_SUCCESS);
    CHECK(cu.func_set_cache_config(vector_add, 4) == CUDA_ERROR_INVALID_VALUE);

    int blocks = 0;
    REQUIRE(cu.occupancy_max_active_blocks(&blocks, vector_add, 256, 0, 0) == CUDA_SUCCESS);
    CHECK(blocks == 8);  // 2048 threads per SM
    REQUIRE(cu.occupancy_max_active_blocks(&blocks, vector_add, 32, 0, 0) == CUDA_SUCCESS);
    CHECK(blocks == 32);  // 32 blocks per SM
    REQUIRE(cu.occupancy_max_active_blocks(&blocks, vector_add, 128, 100 * 1024, 0) == CUDA_SUCCESS);
    CHECK(blocks == 2);  // 228 KiB of shared memory per SM, 1 KiB reserved per block
    REQUIRE(cu.occupancy_max_active_blocks(&blocks, vector_add, 2048, 0, 0) == CUDA_SUCCESS);
    CHECK(blocks == 0);

    CUdeviceptr table = 0, hits = 0;
    std::size_t bytes = 0;
    REQUIRE(cu.module_get_global(&table, &bytes, module, "table") == CUDA_SUCCESS);
    CHECK(bytes == 16);
    float values[4] = {};
    REQUIRE(cu.memcpy_dtoh_async(values, table, sizeof values, nullptr) == CUDA_SUCCESS);
    REQUIRE(cu.module_get_global(&hits, &bytes, module, "hits") == CUDA_SUCCESS);
    CHECK(bytes == 4);
    int zero = 5;
    REQUIRE(cu.memcpy_htod_async(hits, &zero, sizeof zero, nullptr) == CUDA_SUCCESS);
    REQUIRE(cu.ctx_synchronize() == CUDA_SUCCESS);
    CHECK(values[0] == 1.0f);
    CHECK(values[3] == 4.0f);
    CHECK(cu.module_get_global(&table, &bytes, module, "nothing") == CUDA_ERROR_NOT_FOUND);
    CHECK(cu.mem_free(table) == CUDA_ERROR_INVALID_VALUE);  // owned by the module
    REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  }
  require_nothing_left(before);
}

TEST_CASE("modules load from PTX text and refuse images with no code for sm_90", "[sim][module][nvcc]") {
  SKIP_WITHOUT_IMAGES();
  const GpubrokerSimCounters before = counters();
  DriverTable& cu = sim().cu;
  std::vector<unsigned char> ptx = read_file(image_path("sim_kernels_sm90.ptx"));
  ptx.push_back(0);
  CUmodule module = nullptr;
  REQUIRE(cu.module_load_data(&module, ptx.data()) == CUDA_SUCCESS);
  CUfunction fill = get_function(module, "_Z4fillPffi");
  std::size_t offset = 0, size = 0;
  REQUIRE(cu.func_get_param_info(fill, 1, &offset, &size) == CUDA_SUCCESS);
  CHECK(offset == 8);
  CHECK(size == 4);
  REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);

  std::vector<unsigned char> sm80 = read_file(image_path("sim_kernels_sm80_only.fatbin"));
  CHECK(cu.module_load_data(&module, sm80.data()) == CUDA_ERROR_NO_BINARY_FOR_GPU);
  require_nothing_left(before);
}

TEST_CASE("two devices: each context has its own memory, and objects keep to their own context",
          "[.][sim_child_two_devices]") {
  LoadedSim loaded = load_sim();
  REQUIRE(loaded.missing.empty());
  DriverTable& cu = loaded.cu;
  auto configure = reinterpret_cast<GpubrokerSimConfigureDevicesFn>(dlsym(loaded.library, "gpubroker_sim_configure_devices"));
  REQUIRE(configure != nullptr);
  CHECK(configure(33) == CUDA_ERROR_INVALID_VALUE);
  REQUIRE(configure(2) == CUDA_SUCCESS);  // wins over GPUBROKER_SIM_DEVICES=5
  REQUIRE(cu.init(0) == CUDA_SUCCESS);
  CHECK(configure(3) == 401);  // CUDA_ERROR_ILLEGAL_STATE: cuInit has read it
  int count = 0;
  REQUIRE(cu.device_get_count(&count) == CUDA_SUCCESS);
  CHECK(count == 2);
  CUcontext contexts[2] = {};
  REQUIRE(cu.primary_ctx_retain(&contexts[0], 0) == CUDA_SUCCESS);
  REQUIRE(cu.primary_ctx_retain(&contexts[1], 1) == CUDA_SUCCESS);
  CUcontext current = reinterpret_cast<CUcontext>(0x1);
  REQUIRE(cu.ctx_get_current(&current) == CUDA_SUCCESS);
  CHECK(current == nullptr);

  // Memory is accounted on the current context's device only.
  REQUIRE(cu.ctx_set_current(contexts[1]) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_get_current(&current) == CUDA_SUCCESS);
  CHECK(current == contexts[1]);
  std::size_t free1 = 0, free0 = 0, total = 0;
  CUdeviceptr on1 = 0, on0 = 0;
  REQUIRE(cu.mem_alloc(&on1, 1u << 20) == CUDA_SUCCESS);
  REQUIRE(cu.mem_get_info(&free1, &total) == CUDA_SUCCESS);
  CHECK(free1 == total - (1u << 20));
  CUstream stream1 = nullptr;
  REQUIRE(cu.stream_create_with_priority(&stream1, CU_STREAM_NON_BLOCKING, 0) == CUDA_SUCCESS);
  CUevent event1 = nullptr;
  REQUIRE(cu.event_create(&event1, CU_EVENT_DEFAULT) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_set_current(contexts[0]) == CUDA_SUCCESS);
  REQUIRE(cu.mem_get_info(&free0, &total) == CUDA_SUCCESS);
  CHECK(free0 == total);
  REQUIRE(cu.mem_alloc(&on0, 1u << 20) == CUDA_SUCCESS);
  CUstream stream0 = nullptr;
  REQUIRE(cu.stream_create_with_priority(&stream0, CU_STREAM_NON_BLOCKING, 0) == CUDA_SUCCESS);

  // An event records on its own context's streams only; waits and copies cross contexts.
  CHECK(cu.event_record(event1, stream0) == CUDA_ERROR_INVALID_HANDLE);
  CHECK(cu.event_record(event1, nullptr) == CUDA_ERROR_INVALID_HANDLE);  // context 0's NULL stream
  CHECK(cu.event_record(event1, stream1) == CUDA_SUCCESS);
  CHECK(cu.stream_wait_event(stream0, event1, 0) == CUDA_SUCCESS);
  const std::vector<unsigned char> bytes = pattern(1u << 20, 3);
  std::vector<unsigned char> back(bytes.size());
  REQUIRE(cu.memcpy_htod_async(on1, bytes.data(), bytes.size(), stream1) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream1) == CUDA_SUCCESS);
  CHECK(cu.memcpy_peer_async(on0, reinterpret_cast<CUcontext>(0x10), on1, contexts[1], bytes.size(), stream0) ==
        CUDA_ERROR_INVALID_CONTEXT);
  REQUIRE(cu.memcpy_peer_async(on0, contexts[0], on1, contexts[1], bytes.size(), stream0) == CUDA_SUCCESS);
  REQUIRE(cu.memcpy_dtoh_async(back.data(), on0, back.size(), stream0) == CUDA_SUCCESS);
  REQUIRE(cu.stream_synchronize(stream0) == CUDA_SUCCESS);
  CHECK(back == bytes);

  // A kernel launches from the current context's modules onto its streams only.
  if (SIM_HAVE_NVCC) {
    std::vector<unsigned char> image = read_file(std::string(SIM_TEST_IMAGE_DIR) + "/sim_kernels_sm90.fatbin");
    CUmodule module = nullptr;
    REQUIRE(cu.module_load_data(&module, image.data()) == CUDA_SUCCESS);  // in context 0
    CUfunction function = nullptr;
    REQUIRE(cu.module_get_function(&function, module, "_Z10vector_addPKfS0_Pfi") == CUDA_SUCCESS);
    int n = 4;
    void* params[] = {&on0, &on0, &on0, &n};
    CHECK(cu.launch_kernel(function, 1, 1, 1, 32, 1, 1, 0, stream1, params, nullptr) == CUDA_ERROR_INVALID_HANDLE);
    CHECK(cu.launch_kernel(function, 1, 1, 1, 32, 1, 1, 0, stream0, params, nullptr) == CUDA_SUCCESS);
    REQUIRE(cu.ctx_set_current(contexts[1]) == CUDA_SUCCESS);
    CHECK(cu.launch_kernel(function, 1, 1, 1, 32, 1, 1, 0, stream1, params, nullptr) == CUDA_ERROR_INVALID_HANDLE);
    REQUIRE(cu.ctx_set_current(contexts[0]) == CUDA_SUCCESS);
    REQUIRE(cu.stream_synchronize(stream0) == CUDA_SUCCESS);
    REQUIRE(cu.module_unload(module) == CUDA_SUCCESS);
  } else {
    WARN("nvcc not found at build time: the launch checks across contexts are skipped");
  }
  REQUIRE(cu.event_destroy(event1) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream0) == CUDA_SUCCESS);
  REQUIRE(cu.stream_destroy(stream1) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(on0) == CUDA_SUCCESS);
  REQUIRE(cu.mem_free(on1) == CUDA_SUCCESS);
  REQUIRE(cu.ctx_set_current(contexts[1]) == CUDA_SUCCESS);
  REQUIRE(cu.mem_get_info(&free1, &total) == CUDA_SUCCESS);
  CHECK(free1 == total);
}

TEST_CASE("gpubroker_sim_configure_devices sets the device count before cuInit; objects keep to their context",
          "[sim][config]") {
  CHECK(run_child("[sim_child_two_devices]",
                  {"GPUBROKER_SIM_DEVICES=5", std::string("GPUBROKER_SIM_KERNELS=") + SIM_TEST_PLUGIN_PATH}) == 0);
}

TEST_CASE("after everything is freed the sim holds nothing", "[sim][counters]") {
  sim();
  const GpubrokerSimCounters now = counters();
  CHECK(now.live_allocations == 0);
  CHECK(now.live_allocation_bytes == 0);
  CHECK(now.live_streams == 0);
  CHECK(now.live_events == 0);
  CHECK(now.live_modules == 0);
  CHECK(now.live_graphs == 0);
  CHECK(now.live_graph_execs == 0);
  CHECK(now.live_host_registrations == 0);
  CHECK(now.live_vmm_reservations == 0);
  CHECK(now.live_vmm_mappings == 0);
  CHECK(now.live_cublas_handles == 0);
}
