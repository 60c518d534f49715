// The driver (libcuda.so.1) and NVML (libnvidia-ml.so.1) shims against a sim broker: ggml's VMM
// pool end to end (its memory used through the runtime shim's copies), the broker's checks on
// every VMM call, the reclaiming of a session killed while it holds mappings, cuGetProcAddress,
// error strings, CUDA_VISIBLE_DEVICES through libcuda and NVML, and what NVML does not invent.
//
// Each case runs in child processes (the shims keep one session per process); a child prints what
// differs and exits non-zero.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "gpubroker/cuda/runtime_abi.h"
#include "gpubroker/calls/protocol.h"
#include "shim/client/connection.h"
#include "tests/support/broker_process.h"
#include "tests/support/eventually.h"
#include "tests/support/broker_ready.h"
#include "tests/support/child_expect.h"
#include "tests/support/shim_child.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::TempDir;
using testing::in_child;
using testing::start_child;

// The VMM cases run with one context for all, the only mode that serves VMM (with contexts per
// user, a mapping would be visible to every user's context: tests/broker/vmm_test.cc).
const testing::BrokerSettings kServesVmm{{"--isolation=none"}, {}};

extern "C" {
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaMemGetInfo(std::size_t*, std::size_t*);
int cudaGetDeviceCount(int*);
int cudaGetDeviceProperties(gpubroker::cuda::rt::DeviceProp13*, int);
struct AllocationProp {  // CUmemAllocationProp
  int type, requested_handle_types, location_type, location_id;
  void* win32;
  unsigned char flags[8];
};
struct AccessDesc {  // CUmemAccessDesc
  int location_type, location_id, flags;
};
int cuInit(unsigned);
int cuDeviceGetCount(int*);
int cuDeviceGetUuid_v2(unsigned char*, int);
int cuDeviceGetAttribute(int*, int, int);
int cuMemGetAllocationGranularity(std::size_t*, const AllocationProp*, int);
int cuMemAddressReserve(std::uint64_t*, std::size_t, std::size_t, std::uint64_t, unsigned long long);
int cuMemAddressFree(std::uint64_t, std::size_t);
int cuMemCreate(std::uint64_t*, std::size_t, const AllocationProp*, unsigned long long);
int cuMemRelease(std::uint64_t);
int cuMemMap(std::uint64_t, std::size_t, std::size_t, std::uint64_t, unsigned long long);
int cuMemUnmap(std::uint64_t, std::size_t);
int cuMemSetAccess(std::uint64_t, std::size_t, const AccessDesc*, std::size_t);
int cuGetProcAddress(const char*, void**, int, unsigned long long);
int cuGetProcAddress_v2(const char*, void**, int, unsigned long long, int*);
int cuGetErrorName(int, const char**);
int cuGetErrorString(int, const char**);
int cuMemGetInfo_v2(std::size_t*, std::size_t*);
int cuArrayCreate_v2(void**, const void*);  // CUDA arrays (textures) are not served
int nvmlInit_v2();
int nvmlShutdown();
int nvmlDeviceGetCount_v2(unsigned*);
int nvmlDeviceGetHandleByIndex_v2(unsigned, void**);
int nvmlDeviceGetHandleByPciBusId_v2(const char*, void**);
int nvmlDeviceGetUUID(void*, char*, unsigned);
int nvmlDeviceGetTemperature(void*, int, unsigned*);
int nvmlDeviceGetUtilizationRates(void*, unsigned*);
int nvmlDeviceGetCudaComputeCapability(void*, int*, int*);
int nvmlDeviceGetMemoryInfo(void*, unsigned long long*);
int nvmlDeviceGetPciInfo_v3(void*, char*);
int nvmlDeviceGetName(void*, char*, unsigned);
int nvmlSystemGetDriverVersion(char*, unsigned);
int nvmlDeviceGetPowerUsage(void*, unsigned*);
}

namespace {

constexpr int kHostToDevice = 1, kDeviceToHost = 2, kDeviceToDevice = 3;
constexpr int kInvalidValue = 1, kInvalidHandle = 400, kNotFound = 500, kNotSupported = 801;
constexpr int kNvmlUninitialized = 1, kNvmlInvalidArgument = 2, kNvmlNotSupported = 3, kNvmlInsufficientSize = 7;


AllocationProp device_prop(int device) {
  AllocationProp prop{};
  prop.type = 1;           // CU_MEM_ALLOCATION_TYPE_PINNED
  prop.location_type = 1;  // CU_MEM_LOCATION_TYPE_DEVICE
  prop.location_id = device;
  return prop;
}

wire::BrokerTotals broker_totals() {
  wire::BrokerTotals totals{};
  auto reply = shim::Connection::get()->session().call(wire::RequestKind::kBrokerTotals, {});
  if (reply) totals = reply.value().result_as<wire::BrokerTotals>();
  return totals;
}

std::vector<std::uint8_t> pattern(std::size_t bytes, std::uint8_t seed) {
  std::vector<std::uint8_t> p(bytes);
  for (std::size_t i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 12));
  return p;
}

}  // namespace

TEST_CASE("ggml's VMM pool: reserve, create, map, set access, copy through cudaMemcpy, unmap, release", "[driver][vmm]") {
  TempDir dir;
  BrokerProcess broker(dir, kServesVmm);
  CHECK(in_child(broker, [] {
          const AllocationProp prop = device_prop(0);
          std::size_t granularity = 0;
          EXPECT(cuMemGetAllocationGranularity(&granularity, &prop, 0) == 0 && granularity > 0, "granularity");
          const wire::BrokerTotals before = broker_totals();
          std::size_t free_before = 0, total = 0;
          EXPECT(cudaMemGetInfo(&free_before, &total) == 0, "cudaMemGetInfo");

          const std::size_t reserved = 16 * granularity, chunk = 2 * granularity;
          std::uint64_t base = 0;
          EXPECT(cuMemAddressReserve(&base, reserved, 0, 0, 0) == 0 && base != 0, "reserve");
          std::uint64_t first = 0, second = 0;
          EXPECT(cuMemCreate(&first, chunk, &prop, 0) == 0, "create");
          EXPECT(cuMemCreate(&second, chunk, &prop, 0) == 0, "create");
          EXPECT(cuMemMap(base, chunk, 0, first, 0) == 0, "map");
          EXPECT(cuMemMap(base + chunk, chunk, 0, second, 0) == 0, "map back to back");
          // ggml releases each handle right after mapping it: the mapping keeps the memory.
          EXPECT(cuMemRelease(first) == 0 && cuMemRelease(second) == 0, "release");
          EXPECT(broker_totals().device_bytes == before.device_bytes + 2 * chunk, "the mapped memory is the session's");

          const auto data = pattern(2 * granularity, 3);
          void* const middle = reinterpret_cast<void*>(base + granularity);  // straddles the two mappings
          EXPECT(cudaMemcpy(middle, data.data(), data.size(), kHostToDevice) != 0, "a copy before access is granted");
          const AccessDesc access{1, 0, 3};  // device 0, read and write
          EXPECT(cuMemSetAccess(base, 2 * chunk, &access, 1) == 0, "set access");
          EXPECT(cudaMemcpy(middle, data.data(), data.size(), kHostToDevice) == 0, "copy in");
          void* plain = nullptr;
          EXPECT(cudaMalloc(&plain, data.size()) == 0, "cudaMalloc");
          EXPECT(cudaMemcpy(plain, middle, data.size(), kDeviceToDevice) == 0, "VMM to cudaMalloc memory");
          std::vector<std::uint8_t> back(data.size());
          EXPECT(cudaMemcpy(back.data(), plain, back.size(), kDeviceToHost) == 0 && back == data, "the bytes came back");
          std::fill(back.begin(), back.end(), 0);
          EXPECT(cudaMemcpy(back.data(), middle, back.size(), kDeviceToHost) == 0 && back == data, "copy out");
          EXPECT(cudaMemcpy(back.data(), reinterpret_cast<void*>(base + 2 * chunk - 16), 32, kDeviceToHost) != 0,
                 "a copy past the mapped end");
          cudaFree(plain);

          // What the broker refuses.
          std::uint64_t third = 0;
          EXPECT(cuMemCreate(&third, chunk, &prop, 0) == 0, "create");
          EXPECT(cuMemMap(base + granularity, chunk, 0, third, 0) == kInvalidValue, "a mapping over a mapping");
          EXPECT(cuMemMap(base + reserved, chunk, 0, third, 0) == kInvalidValue, "a mapping outside the reservation");
          EXPECT(cuMemMap(base + 4 * granularity, chunk, granularity * 2, third, 0) == kInvalidValue, "past the allocation");
          EXPECT(cuMemMap(base + 4 * granularity, chunk, 0, first, 0) == kInvalidHandle, "a released handle");
          EXPECT(cuMemMap(base + 4 * granularity, chunk, 0, 0xdeadbeef, 0) == kInvalidHandle, "an unknown handle");
          EXPECT(cuMemUnmap(base + granularity, chunk) == kInvalidValue, "half of a mapping");
          EXPECT(cuMemAddressFree(base, reserved) == kInvalidValue, "a reservation that still has mappings");
          EXPECT(cuMemRelease(third) == 0, "release unmapped");
          EXPECT(cuMemRelease(third) == kInvalidValue, "release twice");

          EXPECT(cuMemUnmap(base, 2 * chunk) == 0, "unmap both");
          EXPECT(cudaMemcpy(back.data(), middle, 16, kDeviceToHost) != 0, "a copy after unmapping");
          EXPECT(cuMemAddressFree(base, reserved) == 0, "free the reservation");
          EXPECT(broker_totals().device_bytes == before.device_bytes, "the memory is gone with its last mapping");
          std::size_t free_after = 0;
          EXPECT(cudaMemGetInfo(&free_after, &total) == 0 && free_after == free_before, "free %zu, before %zu", free_after,
                 free_before);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("a session killed while it holds VMM mappings leaves the broker at its baseline", "[driver][vmm][fault]") {
  TempDir dir;
  BrokerProcess broker(dir, kServesVmm);
  CHECK(in_child(broker, [&] {
          const wire::BrokerTotals before = broker_totals();
          std::size_t free_before = 0, total = 0;
          EXPECT(cudaMemGetInfo(&free_before, &total) == 0, "cudaMemGetInfo");
          int ready[2];
          EXPECT(::pipe(ready) == 0, "pipe");
          const pid_t victim = testing::run_in_child([&] {
            // A fresh process: its own session.
            const AllocationProp prop = device_prop(0);
            std::size_t granularity = 0;
            std::uint64_t base = 0, handle = 0;
            int ok = cuMemGetAllocationGranularity(&granularity, &prop, 0) == 0 &&
                     cuMemAddressReserve(&base, 8 * granularity, 0, 0, 0) == 0 &&
                     cuMemCreate(&handle, 4 * granularity, &prop, 0) == 0 && cuMemMap(base, 4 * granularity, 0, handle, 0) == 0;
            const AccessDesc access{1, 0, 3};
            ok = ok && cuMemSetAccess(base, 4 * granularity, &access, 1) == 0;
            const auto data = pattern(granularity, 9);
            ok = ok && cudaMemcpy(reinterpret_cast<void*>(base), data.data(), data.size(), kHostToDevice) == 0;
            std::uint64_t unmapped = 0;
            ok = ok && cuMemCreate(&unmapped, 2 * granularity, &prop, 0) == 0;  // held, never mapped
            const char answer = ok ? 1 : 0;
            [[maybe_unused]] auto written = ::write(ready[1], &answer, 1);
            ::pause();
            return 0;
          });
          char answer = 0;
          EXPECT(::read(ready[0], &answer, 1) == 1 && answer == 1, "the victim built its pool");
          const wire::BrokerTotals holding = broker_totals();
          EXPECT(holding.device_bytes > before.device_bytes && holding.sessions == before.sessions + 1, "held %llu",
                 static_cast<unsigned long long>(holding.device_bytes));
          ::kill(victim, SIGKILL);
          EXPECT(testing::wait_for_child(victim) == 128 + SIGKILL, "killed");
          wire::BrokerTotals after{};
          (void)testing::poll_until([&] {
            after = broker_totals();
            return after.sessions == before.sessions;
          });
          EXPECT(after.sessions == before.sessions && after.device_bytes == before.device_bytes &&
                     after.allocations == before.allocations,
                 "sessions %llu, bytes %llu, allocations %llu", static_cast<unsigned long long>(after.sessions),
                 static_cast<unsigned long long>(after.device_bytes), static_cast<unsigned long long>(after.allocations));
          // The driver got the physical memory back too: mappings undone and allocations released.
          std::size_t free_after = 0;
          EXPECT(cudaMemGetInfo(&free_after, &total) == 0 && free_after == free_before, "free %zu, before %zu", free_after,
                 free_before);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("one session cannot map, unmap or free another session's VMM objects", "[driver][vmm][security]") {
  TempDir dir;
  BrokerProcess broker(dir, kServesVmm);
  int to_other[2];
  REQUIRE(::pipe(to_other) == 0);
  int done[2];
  REQUIRE(::pipe(done) == 0);
  const pid_t owner = start_child(broker, [&] {
    const AllocationProp prop = device_prop(0);
    std::size_t granularity = 0;
    std::uint64_t objects[3] = {};  // base, handle, granularity
    EXPECT(cuMemGetAllocationGranularity(&granularity, &prop, 0) == 0, "granularity");
    EXPECT(cuMemAddressReserve(&objects[0], 4 * granularity, 0, 0, 0) == 0, "reserve");
    EXPECT(cuMemCreate(&objects[1], 2 * granularity, &prop, 0) == 0, "create");
    EXPECT(cuMemMap(objects[0], 2 * granularity, 0, objects[1], 0) == 0, "map");
    const AccessDesc access{1, 0, 3};
    EXPECT(cuMemSetAccess(objects[0], 2 * granularity, &access, 1) == 0, "access");
    objects[2] = granularity;
    [[maybe_unused]] auto written = ::write(to_other[1], objects, sizeof objects);
    char finished = 0;
    [[maybe_unused]] auto got = ::read(done[0], &finished, 1);
    // Still intact after the other session's attempts.
    const auto data = pattern(64, 1);
    std::vector<std::uint8_t> back(64);
    EXPECT(cudaMemcpy(reinterpret_cast<void*>(objects[0]), data.data(), 64, kHostToDevice) == 0 &&
               cudaMemcpy(back.data(), reinterpret_cast<void*>(objects[0]), 64, kDeviceToHost) == 0 && back == data,
           "the owner's mapping works");
  });
  REQUIRE(owner > 0);
  std::uint64_t objects[3] = {};
  REQUIRE(::read(to_other[0], objects, sizeof objects) == sizeof objects);
  CHECK(in_child(broker, [&] {
          const std::uint64_t base = objects[0], handle = objects[1], granularity = objects[2];
          std::uint8_t byte = 0;
          EXPECT(cudaMemcpy(&byte, reinterpret_cast<void*>(base), 1, kDeviceToHost) != 0, "reading another's mapping");
          EXPECT(cuMemMap(base + 2 * granularity, granularity, 0, handle, 0) != 0, "mapping another's allocation");
          EXPECT(cuMemUnmap(base, 2 * granularity) != 0, "unmapping another's mapping");
          const AccessDesc access{1, 0, 3};
          EXPECT(cuMemSetAccess(base, 2 * granularity, &access, 1) != 0, "setting access on another's mapping");
          EXPECT(cuMemRelease(handle) != 0, "releasing another's allocation");
          EXPECT(cuMemAddressFree(base, 4 * granularity) != 0, "freeing another's reservation");
        }) == 0);
  REQUIRE(::write(done[1], "x", 1) == 1);
  CHECK(testing::wait_for_child(owner) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("cuGetProcAddress serves what the driver shim implements and nothing else", "[driver]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child(broker, [] {
          void* function = nullptr;
          int status = -1;
          EXPECT(cuGetProcAddress("cuMemCreate", &function, 12000, 0) == 0 && function == reinterpret_cast<void*>(&cuMemCreate),
                 "cuMemCreate");
          EXPECT(cuGetProcAddress_v2("cuMemGetInfo", &function, 13000, 0, &status) == 0 &&
                     function == reinterpret_cast<void*>(&cuMemGetInfo_v2) && status == 0,
                 "cuMemGetInfo is the _v2 form for CUDA 13");
          EXPECT(cuGetProcAddress_v2("cuArrayCreate", &function, 13000, 0, &status) == kNotFound && function == nullptr &&
                     status == 1,
                 "a function the shim does not serve is not found");
          auto* init = reinterpret_cast<int (*)(unsigned)>(function);
          EXPECT(cuGetProcAddress("cuInit", reinterpret_cast<void**>(&init), 12000, 0) == 0 && init(0) == 0, "cuInit");
          const char* text = nullptr;
          EXPECT(cuGetErrorName(801, &text) == 0 && std::string(text) == "CUDA_ERROR_NOT_SUPPORTED", "name");
          EXPECT(cuGetErrorString(2, &text) == 0 && std::string(text) == "out of memory", "string");
          EXPECT(cuGetErrorString(123456, &text) == kInvalidValue && text == nullptr, "an unknown code");
          void* module = nullptr;
          EXPECT(cuArrayCreate_v2(&module, nullptr) == kNotSupported, "a stub returns CUDA_ERROR_NOT_SUPPORTED");
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("libcuda and NVML apply CUDA_VISIBLE_DEVICES as the runtime does", "[driver][nvml]") {
  TempDir dir;
  BrokerProcess broker(dir, testing::BrokerSettings{{}, {{"GPUBROKER_SIM_DEVICES", "3"}}});
  unsigned char second_uuid[16] = {};
  int uuid_pipe[2];
  REQUIRE(::pipe(uuid_pipe) == 0);
  // Every device, in order.
  CHECK(in_child(broker, [&] {
          int count = 0;
          EXPECT(cuInit(0) == 0 && cuDeviceGetCount(&count) == 0 && count == 3, "count %d", count);
          EXPECT(cuDeviceGetUuid_v2(second_uuid, 1) == 0, "uuid");
          EXPECT(::write(uuid_pipe[1], second_uuid, 16) == 16, "to the parent");
          EXPECT(nvmlDeviceGetCount_v2(reinterpret_cast<unsigned*>(&count)) == kNvmlUninitialized, "NVML before nvmlInit");
          unsigned nvml_count = 0;
          EXPECT(nvmlInit_v2() == 0 && nvmlDeviceGetCount_v2(&nvml_count) == 0 && nvml_count == 3, "NVML count %u", nvml_count);
          EXPECT(nvmlShutdown() == 0 && nvmlShutdown() == kNvmlUninitialized, "shutdown pairs with init");
        }) == 0);
  REQUIRE(::read(uuid_pipe[0], second_uuid, 16) == 16);
  // Index form, reordered: device 0 of the process is broker device 2.
  CHECK(in_child(broker, [&] {
          int count = 0, rt_count = 0;
          EXPECT(cuDeviceGetCount(&count) == 0 && count == 2, "count %d", count);
          EXPECT(cudaGetDeviceCount(&rt_count) == 0 && rt_count == 2, "runtime count %d", rt_count);
          unsigned char uuid[16];
          EXPECT(cuDeviceGetUuid_v2(uuid, 1) == 0 && std::memcmp(uuid, second_uuid, 16) == 0, "device 1 is broker device 1");
          EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
          unsigned nvml_count = 0;
          EXPECT(nvmlDeviceGetCount_v2(&nvml_count) == 0 && nvml_count == 2, "NVML count %u", nvml_count);
          void* device = nullptr;
          EXPECT(nvmlDeviceGetHandleByIndex_v2(1, &device) == 0, "handle");
          char text[80] = {};
          EXPECT(nvmlDeviceGetUUID(device, text, sizeof text) == 0, "uuid");
          char expected[48];
          std::snprintf(expected, sizeof expected, "GPU-%02x%02x%02x%02x-", second_uuid[0], second_uuid[1], second_uuid[2],
                        second_uuid[3]);
          EXPECT(std::string(text).rfind(expected, 0) == 0, "NVML device 1 is %s", text);
          EXPECT(nvmlDeviceGetUUID(device, text, 20) == kNvmlInsufficientSize, "a short buffer");
          EXPECT(nvmlDeviceGetHandleByIndex_v2(2, &device) == kNvmlInvalidArgument, "an invisible index");
          nvmlShutdown();
        }, "2,1") == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("NVML answers discovery from the device table and invents no figures", "[nvml]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child(broker, [] {
          EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
          void* device = nullptr;
          EXPECT(nvmlDeviceGetHandleByIndex_v2(0, &device) == 0, "handle");
          char pci[16 + 5 * 4 + 32] = {};
          EXPECT(nvmlDeviceGetPciInfo_v3(device, pci) == 0, "PCI info");
          void* by_bus = nullptr;
          EXPECT(nvmlDeviceGetHandleByPciBusId_v2(pci + 36, &by_bus) == 0 && by_bus == device, "by bus id %s", pci + 36);
          EXPECT(nvmlDeviceGetHandleByPciBusId_v2(pci, &by_bus) == 0 && by_bus == device, "by legacy bus id %s", pci);
          int major = 0, minor = -1, attribute = 0;
          EXPECT(nvmlDeviceGetCudaComputeCapability(device, &major, &minor) == 0 && cuDeviceGetAttribute(&attribute, 75, 0) == 0 &&
                     major == attribute && major > 0,
                 "compute capability %d.%d", major, minor);
          unsigned long long memory[3] = {};
          std::size_t free = 0, total = 0;
          EXPECT(nvmlDeviceGetMemoryInfo(device, memory) == 0 && cuMemGetInfo_v2(&free, &total) == 0 && memory[0] == total &&
                     memory[1] == free,
                 "memory");
          unsigned value = 0;
          EXPECT(nvmlDeviceGetTemperature(device, 0, &value) == kNvmlNotSupported, "temperature");
          unsigned utilization[2] = {};
          EXPECT(nvmlDeviceGetUtilizationRates(device, utilization) == kNvmlNotSupported, "utilization");
          char version[80] = {};
          EXPECT(nvmlSystemGetDriverVersion(version, sizeof version) == kNvmlNotSupported, "no kernel driver in the sim");
          EXPECT(nvmlDeviceGetPowerUsage(device, &value) == kNvmlNotSupported, "a stub");
          EXPECT(nvmlDeviceGetName(reinterpret_cast<void*>(0x10), version, sizeof version) == kNvmlInvalidArgument,
                 "a handle that is not one");
          nvmlShutdown();
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("malformed VMM and cublasStrsmBatched requests get errors; the broker and the session go on", "[driver][vmm][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir, kServesVmm);
  CHECK(in_child(broker, [] {
          shim::Connection* connection = shim::Connection::get();
          EXPECT(connection != nullptr, "connected");
          if (connection == nullptr) return;
          ipc::ClientSession& session = connection->session();
          std::uint64_t base = 0;
          EXPECT(cuMemAddressReserve(&base, 64ull << 20, 0, 0, 0) == 0, "reserve");
          const std::uint64_t edges[] = {0, 1, base, base + 1, base + (2 << 20), ~0ull, ~0ull - (2 << 20) + 1, 1ull << 63};
          const wire::RequestKind kinds[] = {wire::RequestKind::kVmmGranularity, wire::RequestKind::kVmmAddressReserve,
                                             wire::RequestKind::kVmmAddressFree,  wire::RequestKind::kVmmCreate,
                                             wire::RequestKind::kVmmRelease,      wire::RequestKind::kVmmMap,
                                             wire::RequestKind::kVmmUnmap,        wire::RequestKind::kVmmSetAccess,
                                             wire::RequestKind::kBlasTrsmBatched};
          std::uint64_t state = 0x9e3779b97f4a7c15ull;
          int answered = 0;
          for (wire::RequestKind kind : kinds) {
            const std::size_t bytes = wire::kRequestShapes[static_cast<std::size_t>(kind)].max_payload;
            for (int round = 0; round < 200; ++round) {
              std::vector<std::uint64_t> words((bytes + 7) / 8);
              for (auto& word : words) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                word = (state >> 61) < 5 ? edges[(state >> 20) % std::size(edges)] : state;
              }
              if (kind == wire::RequestKind::kVmmAddressReserve) words[0] %= 1ull << 32;  // do not exhaust the host
              if (kind == wire::RequestKind::kVmmCreate) words[0] %= 1ull << 24;
              auto reply = session.call(kind, std::span(reinterpret_cast<const std::byte*>(words.data()), bytes));
              answered += reply.has_value() ? 1 : 0;
            }
          }
          EXPECT(answered == 9 * 200, "every request answered (%d)", answered);
          void* p = nullptr;
          EXPECT(cudaMalloc(&p, 4096) == 0 && cudaFree(p) == 0, "the session still works");
        }) == 0);
  // And a fresh session is served: the broker did not die.
  CHECK(in_child(broker, [] {
          int count = 0;
          EXPECT(cudaGetDeviceCount(&count) == 0 && count == 1, "count %d", count);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("a session's VMM reservations and mappings are bounded", "[driver][vmm][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir, kServesVmm);
  CHECK(in_child(broker, [] {
          constexpr int kOutOfMemory = 2;
          const AllocationProp prop = device_prop(0);
          std::size_t granularity = 0;
          EXPECT(cuMemGetAllocationGranularity(&granularity, &prop, 0) == 0, "granularity");
          std::uint64_t base = 0;
          EXPECT(cuMemAddressReserve(&base, (1ull << 42) + granularity, 0, 0, 0) == kOutOfMemory, "more than 4 TiB");
          std::vector<std::uint64_t> reserved;
          int result = 0;
          while (reserved.size() < 2000 && (result = cuMemAddressReserve(&base, granularity, 0, 0, 0)) == 0) {
            reserved.push_back(base);
          }
          EXPECT(result == kOutOfMemory && reserved.size() == 1024, "%zu reservations, then %d", reserved.size(), result);
          for (std::uint64_t address : reserved) EXPECT(cuMemAddressFree(address, granularity) == 0, "free");
          EXPECT(cuMemAddressReserve(&base, granularity, 0, 0, 0) == 0, "room again once freed");
        }) == 0);
  CHECK(broker.stop() == 0);
}

namespace {
std::string testing_join(const std::vector<std::size_t>& values) {
  std::string out;
  for (std::size_t v : values) out += std::to_string(v) + " ";
  return out;
}
}  // namespace

// Every field of cudaDeviceProp (13.0 layout) that a device attribute answers, with the attribute's
// number as the CUDA Runtime API documentation pairs them. Fields the list leaves out are the
// identity (name, uuid, totalGlobalMem), Windows's luid, and the reserved tail.
TEST_CASE("cudaGetDeviceProperties fills every field a device attribute answers, as cuDeviceGetAttribute does",
          "[runtime][properties]") {
  using Prop = cuda::rt::DeviceProp13;
  struct Field {
    const char* name;
    std::size_t offset, bytes;
    int attribute;
  };
#define FIELD(field, attribute) Field{#field, offsetof(Prop, field), sizeof(Prop::field), attribute}
#define ELEMENT(field, i, attribute) Field{#field "[" #i "]", offsetof(Prop, field) + (i) * sizeof(int), sizeof(int), attribute}
  const Field fields[] = {
      FIELD(sharedMemPerBlock, 8), FIELD(regsPerBlock, 12), FIELD(warpSize, 10), FIELD(memPitch, 11),
      FIELD(maxThreadsPerBlock, 1), ELEMENT(maxThreadsDim, 0, 2), ELEMENT(maxThreadsDim, 1, 3),
      ELEMENT(maxThreadsDim, 2, 4), ELEMENT(maxGridSize, 0, 5), ELEMENT(maxGridSize, 1, 6), ELEMENT(maxGridSize, 2, 7),
      FIELD(totalConstMem, 9), FIELD(major, 75), FIELD(minor, 76), FIELD(textureAlignment, 14),
      FIELD(texturePitchAlignment, 51), FIELD(multiProcessorCount, 16), FIELD(integrated, 18),
      FIELD(canMapHostMemory, 19), FIELD(maxTexture1D, 21), FIELD(maxTexture1DMipmap, 77),
      ELEMENT(maxTexture2D, 0, 22), ELEMENT(maxTexture2D, 1, 23), ELEMENT(maxTexture2DMipmap, 0, 73),
      ELEMENT(maxTexture2DMipmap, 1, 74), ELEMENT(maxTexture2DLinear, 0, 70), ELEMENT(maxTexture2DLinear, 1, 71),
      ELEMENT(maxTexture2DLinear, 2, 72), ELEMENT(maxTexture2DGather, 0, 45), ELEMENT(maxTexture2DGather, 1, 46),
      ELEMENT(maxTexture3D, 0, 24), ELEMENT(maxTexture3D, 1, 25), ELEMENT(maxTexture3D, 2, 26),
      ELEMENT(maxTexture3DAlt, 0, 47), ELEMENT(maxTexture3DAlt, 1, 48), ELEMENT(maxTexture3DAlt, 2, 49),
      FIELD(maxTextureCubemap, 52), ELEMENT(maxTexture1DLayered, 0, 42), ELEMENT(maxTexture1DLayered, 1, 43),
      ELEMENT(maxTexture2DLayered, 0, 27), ELEMENT(maxTexture2DLayered, 1, 28), ELEMENT(maxTexture2DLayered, 2, 29),
      ELEMENT(maxTextureCubemapLayered, 0, 53), ELEMENT(maxTextureCubemapLayered, 1, 54), FIELD(maxSurface1D, 55),
      ELEMENT(maxSurface2D, 0, 56), ELEMENT(maxSurface2D, 1, 57), ELEMENT(maxSurface3D, 0, 58),
      ELEMENT(maxSurface3D, 1, 59), ELEMENT(maxSurface3D, 2, 60), ELEMENT(maxSurface1DLayered, 0, 61),
      ELEMENT(maxSurface1DLayered, 1, 62), ELEMENT(maxSurface2DLayered, 0, 63), ELEMENT(maxSurface2DLayered, 1, 64),
      ELEMENT(maxSurface2DLayered, 2, 65), FIELD(maxSurfaceCubemap, 66), ELEMENT(maxSurfaceCubemapLayered, 0, 67),
      ELEMENT(maxSurfaceCubemapLayered, 1, 68), FIELD(surfaceAlignment, 30), FIELD(concurrentKernels, 31),
      FIELD(ECCEnabled, 32), FIELD(pciBusID, 33), FIELD(pciDeviceID, 34), FIELD(pciDomainID, 50),
      FIELD(tccDriver, 35), FIELD(asyncEngineCount, 40), FIELD(unifiedAddressing, 41), FIELD(memoryBusWidth, 37),
      FIELD(l2CacheSize, 38), FIELD(persistingL2CacheMaxSize, 108), FIELD(maxThreadsPerMultiProcessor, 39),
      FIELD(streamPrioritiesSupported, 78), FIELD(globalL1CacheSupported, 79), FIELD(localL1CacheSupported, 80),
      FIELD(sharedMemPerMultiprocessor, 81), FIELD(regsPerMultiprocessor, 82), FIELD(managedMemory, 83),
      FIELD(isMultiGpuBoard, 84), FIELD(multiGpuBoardGroupID, 85), FIELD(hostNativeAtomicSupported, 86),
      FIELD(pageableMemoryAccess, 88), FIELD(concurrentManagedAccess, 89), FIELD(computePreemptionSupported, 90),
      FIELD(canUseHostPointerForRegisteredMem, 91), FIELD(cooperativeLaunch, 95), FIELD(sharedMemPerBlockOptin, 97),
      FIELD(pageableMemoryAccessUsesHostPageTables, 100), FIELD(directManagedMemAccessFromHost, 101),
      FIELD(maxBlocksPerMultiProcessor, 106), FIELD(accessPolicyMaxWindowSize, 109),
      FIELD(reservedSharedMemPerBlock, 111), FIELD(hostRegisterSupported, 99), FIELD(sparseCudaArraySupported, 112),
      FIELD(hostRegisterReadOnlySupported, 113), FIELD(timelineSemaphoreInteropSupported, 114),
      FIELD(memoryPoolsSupported, 115), FIELD(gpuDirectRDMASupported, 116), FIELD(gpuDirectRDMAFlushWritesOptions, 117),
      FIELD(gpuDirectRDMAWritesOrdering, 118), FIELD(memoryPoolSupportedHandleTypes, 119),
      FIELD(deferredMappingCudaArraySupported, 121), FIELD(ipcEventSupported, 125), FIELD(clusterLaunch, 120),
      FIELD(unifiedFunctionPointers, 129), FIELD(deviceNumaConfig, 130), FIELD(deviceNumaId, 131),
      FIELD(mpsEnabled, 133), FIELD(hostNumaId, 134), FIELD(gpuPciDeviceID, 139), FIELD(gpuPciSubsystemID, 140),
      FIELD(hostNumaMultinodeIpcSupported, 143),
  };
#undef FIELD
#undef ELEMENT
  // The list leaves nothing out: with the identity, luid and the reserved tail it covers every byte
  // of the structure but alignment padding.
  std::vector<bool> covered(sizeof(Prop), false);
  auto cover = [&](std::size_t offset, std::size_t bytes) {
    for (std::size_t i = offset; i < offset + bytes; ++i) covered[i] = true;
  };
  for (const Field& f : fields) cover(f.offset, f.bytes);
  cover(offsetof(Prop, name), sizeof(Prop::name) + sizeof(Prop::uuid) + sizeof(Prop::luid) + sizeof(Prop::luidDeviceNodeMask));
  cover(offsetof(Prop, totalGlobalMem), sizeof(Prop::totalGlobalMem));
  cover(offsetof(Prop, reserved), sizeof(Prop::reserved));
  std::vector<std::size_t> holes;
  for (std::size_t i = 0; i < sizeof(Prop); i += 4) {
    if (!covered[i]) holes.push_back(i);
  }
  INFO("uncovered 4-byte words at offsets " << testing_join(holes));
  // Alignment padding only: the four bytes before each size_t that follows an odd number of ints
  // (totalGlobalMem, totalConstMem, sharedMemPerMultiprocessor).
  const std::vector<std::size_t> padding = {offsetof(Prop, totalGlobalMem) - 4, offsetof(Prop, totalConstMem) - 4,
                                            offsetof(Prop, sharedMemPerMultiprocessor) - 4};
  CHECK(holes == padding);

  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child(broker, [&] {
          Prop p{};
          EXPECT(cudaGetDeviceProperties(&p, 0) == 0, "cudaGetDeviceProperties");
          EXPECT(cuInit(0) == 0, "cuInit");
          int nonzero = 0;
          for (const Field& f : fields) {
            int want = -1;
            EXPECT(cuDeviceGetAttribute(&want, f.attribute, 0) == 0, "attribute %d", f.attribute);
            const char* at = reinterpret_cast<const char*>(&p) + f.offset;
            long long got = 0;
            if (f.bytes == 4) {
              std::int32_t value;
              std::memcpy(&value, at, 4);
              got = value;  // int or unsigned: the attribute's bits either way
            } else {
              std::uint64_t value;
              std::memcpy(&value, at, 8);
              got = static_cast<long long>(value);
            }
            EXPECT(got == want, "%s is %lld; attribute %d says %d", f.name, got, f.attribute, want);
            nonzero += want != 0;
          }
          EXPECT(nonzero > 90, "the sim answers most attributes with a nonzero value (%d)", nonzero);
        }) == 0);
}

// CUDA 12 binaries call cudaGetDeviceProperties_v2 with the 1032-byte layout, which keeps the
// fields 13.0 removed: they come from the same attributes.
TEST_CASE("libcudart.so.12's cudaGetDeviceProperties_v2 fills the fields CUDA 13 removed", "[runtime][properties]") {
  const char* cudart12 = std::getenv("GPUBROKER_CUDART12");
  REQUIRE(cudart12 != nullptr);
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child(broker, [&] {
          void* library = ::dlopen(cudart12, RTLD_NOW | RTLD_LOCAL);
          EXPECT(library != nullptr, "dlopen %s: %s", cudart12, ::dlerror());
          if (library == nullptr) return;
          using GetProperties = int (*)(cuda::rt::DeviceProp12*, int);
          auto get = reinterpret_cast<GetProperties>(::dlsym(library, "cudaGetDeviceProperties_v2"));
          cuda::rt::DeviceProp12 p{};
          EXPECT(get != nullptr && get(&p, 0) == 0, "cudaGetDeviceProperties_v2");
          EXPECT(cuInit(0) == 0, "cuInit");
          auto attribute = [](int number) {
            int value = -1;
            EXPECT(cuDeviceGetAttribute(&value, number, 0) == 0, "attribute %d", number);
            return value;
          };
          EXPECT(p.clockRate == attribute(13) && p.clockRate != 0, "clockRate %d", p.clockRate);
          EXPECT(p.deviceOverlap == attribute(15), "deviceOverlap %d", p.deviceOverlap);
          EXPECT(p.kernelExecTimeoutEnabled == attribute(17), "kernelExecTimeoutEnabled");
          EXPECT(p.computeMode == attribute(20), "computeMode");
          EXPECT(p.memoryClockRate == attribute(36) && p.memoryClockRate != 0, "memoryClockRate %d", p.memoryClockRate);
          EXPECT(p.singleToDoublePrecisionPerfRatio == attribute(87), "singleToDoublePrecisionPerfRatio");
          EXPECT(p.cooperativeMultiDeviceLaunch == attribute(96), "cooperativeMultiDeviceLaunch");
          EXPECT(p.maxTexture1DLinear == attribute(69) && p.maxTexture1DLinear != 0, "maxTexture1DLinear");
          EXPECT(p.maxTexture2DGather[1] == attribute(46) && p.maxSurfaceCubemapLayered[1] == attribute(68),
                 "the texture and surface limits, as in 13.0");
          EXPECT(p.major == 9 && p.minor == 0, "compute capability %d.%d", p.major, p.minor);
        }) == 0);
}

TEST_CASE("every NVML call that fails says so once on stderr, naming the call and the error", "[nvml]") {
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string log = dir.path() + "/nvml-stderr.txt";
  CHECK(in_child(broker, [&] {
          EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
          void* device = nullptr;
          EXPECT(nvmlDeviceGetHandleByIndex_v2(0, &device) == 0, "handle");
          // Only the calls' own lines go to the file: EXPECT writes to stderr too.
          const int saved = ::dup(STDERR_FILENO);
          const int file = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
          EXPECT(saved >= 0 && file >= 0 && ::dup2(file, STDERR_FILENO) == STDERR_FILENO, "stderr to %s", log.c_str());
          unsigned value = 0, utilization[2] = {};
          char version[80] = {};
          const int temperature = nvmlDeviceGetTemperature(device, 0, &value);
          const int again = nvmlDeviceGetTemperature(device, 0, &value);
          const int busy = nvmlDeviceGetUtilizationRates(device, utilization);
          const int driver = nvmlSystemGetDriverVersion(version, sizeof version);
          const int name = nvmlDeviceGetName(device, version, sizeof version);
          ::dup2(saved, STDERR_FILENO);
          ::close(saved);
          ::close(file);
          EXPECT(temperature == kNvmlNotSupported && again == kNvmlNotSupported && busy == kNvmlNotSupported &&
                     driver == kNvmlNotSupported && name == 0,
                 "the answers");
          nvmlShutdown();
        }) == 0);
  CHECK(broker.stop() == 0);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto count = [&](const std::string& what) {
    int n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  INFO(text);
  CHECK(count("nvmlDeviceGetTemperature failed in the gpubroker NVML shim: it returns Not Supported") == 1);
  CHECK(count("nvmlDeviceGetUtilizationRates failed") == 1);
  CHECK(count("nvmlSystemGetDriverVersion failed") == 1);
  CHECK(count("nvmlDeviceGetName") == 0);  // it succeeded
}
