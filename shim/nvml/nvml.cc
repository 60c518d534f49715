// libnvidia-ml.so.1: the NVML calls that Ollama's and llama.cpp's discovery make, answered from the
// same device table (and, for memory, the same kMemGetInfo request) as libcudart and libcuda, so
// that every library reports one identity per device: name, "GPU-..." UUID, PCI ids, memory.
//
// Devices are numbered as CUDA numbers them, with CUDA_VISIBLE_DEVICES applied (DESIGN.md: every
// library honours it), unlike NVIDIA's NVML, which lists every device of the machine. A
// nvmlDevice_t is the address of this library's record of a visible device.
//
// Figures the broker does not hand out are not invented: utilization and temperature are
// NVML_ERROR_NOT_SUPPORTED, and so is the kernel driver's version on the sim driver (on a GPU
// host it is read from /proc/driver/nvidia/version, which the NVIDIA kernel module writes).
//
// Everything else NVML exports is a generated stub that logs its name once and returns
// NVML_ERROR_NOT_SUPPORTED.
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/driver_api.h"
#include "shim/abi/unsupported.h"
#include "shim/client/calls.h"
#include "shim/client/connection.h"
#include "shim/client/visible_devices.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;

extern "C" const char* nvmlErrorString(int result);  // below; answered() names errors with it

namespace {

using Return = int;  // nvmlReturn_t

constexpr Return kSuccess = 0;
constexpr Return kUninitialized = 1;
constexpr Return kInvalidArgument = 2;
constexpr Return kNotSupported = 3;
constexpr Return kNoPermission = 4;
constexpr Return kNotFound = 6;
constexpr Return kInsufficientSize = 7;
constexpr Return kDriverNotLoaded = 9;
constexpr Return kGpuIsLost = 15;
constexpr Return kUnknown = 999;

// NVML's buffer sizes.
constexpr unsigned kUuidBytes = 80;   // NVML_DEVICE_UUID_BUFFER_SIZE
constexpr unsigned kNameBytes = 96;   // NVML_DEVICE_NAME_V2_BUFFER_SIZE

struct Device {
  std::uint32_t index;  // visible index
};
Device g_devices[wire::kMaxDevices];

// nvmlInit/nvmlShutdown pairs; calls other than init need a positive count. Relaxed: a count.
std::atomic<int> g_initialized{0};

struct nvmlMemory_t {
  unsigned long long total, free, used;
};
struct nvmlMemory_v2_t {
  unsigned version;
  unsigned long long total, reserved, free, used;
};
constexpr unsigned kMemoryV2Version = sizeof(nvmlMemory_v2_t) | (2u << 24);  // nvmlMemory_v2

struct nvmlPciInfo_t {
  char busIdLegacy[16];
  unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};

struct nvmlUtilization_t {
  unsigned gpu, memory;
};

shim::Connection* connection() { return shim::Connection::get(); }

// The record behind a handle, or nullptr for anything that is not one of ours.
const wire::DeviceRecord* record_of(const Device* device, std::uint32_t* ordinal = nullptr) {
  if (g_initialized.load(std::memory_order_relaxed) <= 0) return nullptr;
  shim::Connection* c = connection();
  const auto address = reinterpret_cast<std::uintptr_t>(device);
  const auto first = reinterpret_cast<std::uintptr_t>(&g_devices[0]);
  if (c == nullptr || address < first || (address - first) % sizeof(Device) != 0) return nullptr;
  const std::size_t index = (address - first) / sizeof(Device);
  if (index >= c->visible().size()) return nullptr;
  if (ordinal != nullptr) *ordinal = c->visible()[index];
  return &c->device(static_cast<std::uint32_t>(index));
}

Return handle_error() { return g_initialized.load(std::memory_order_relaxed) <= 0 ? kUninitialized : kInvalidArgument; }

Return copy_string(char* destination, unsigned length, const std::string& source) {
  if (destination == nullptr) return kInvalidArgument;
  if (length < source.size() + 1) return kInsufficientSize;
  std::memcpy(destination, source.c_str(), source.size() + 1);
  return kSuccess;
}

// NVML's bus id form: an 8-digit domain.
std::string nvml_bus_id(const wire::DeviceRecord& d) {
  char text[32];
  std::snprintf(text, sizeof text, "%08x:%02x:%02x.0", static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID]),
                static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID]),
                static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID]));
  for (char* c = text; *c != '\0'; ++c) *c = static_cast<char>(std::toupper(static_cast<unsigned char>(*c)));
  return text;
}

Return memory_of(const Device* device, std::uint64_t& free, std::uint64_t& total) {
  std::uint32_t ordinal = 0;
  if (record_of(device, &ordinal) == nullptr) return handle_error();
  auto reply = shim::call<wire::RequestKind::kMemGetInfo>(connection()->session(), wire::DeviceRequest{ordinal, 0});
  if (!reply) return kGpuIsLost;
  if (reply.value().status != 0) return kUnknown;
  const wire::MemInfoResult& info = reply.value().reply;
  free = info.free;
  total = info.total;
  return kSuccess;
}

Return find_device(Device** device, auto&& matches) {
  if (device == nullptr) return kInvalidArgument;
  if (g_initialized.load(std::memory_order_relaxed) <= 0) return kUninitialized;
  shim::Connection* c = connection();
  if (c == nullptr) return kUninitialized;
  for (std::uint32_t i = 0; i < c->visible().size(); ++i) {
    if (matches(c->device(i))) {
      *device = &g_devices[i];
      return kSuccess;
    }
  }
  return kNotFound;
}

// "domain:bus:device.function" (any domain width) or "bus:device.function", hexadecimal.
bool parse_bus_id(const char* text, unsigned& domain, unsigned& bus, unsigned& slot) {
  unsigned function = 0;
  if (std::sscanf(text, "%x:%x:%x.%x", &domain, &bus, &slot, &function) == 4) return function == 0;
  domain = 0;
  return std::sscanf(text, "%x:%x.%x", &bus, &slot, &function) == 3 && function == 0;
}

// Every failure an exported function answers is logged once per function (its first), naming the
// error, so that a program that stops at an NVML error says which call and why. `function` is the
// caller's __func__ (static storage, as the log requires).
Return answered(const char* function, Return result) {
  if (result != kSuccess) gpubroker_log_failure_once(function, "NVML", nvmlErrorString(result));
  return result;
}

}  // namespace

extern "C" {

// ---- library --------------------------------------------------------------------------------

Return nvmlInitWithFlags(unsigned /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  shim::Connection* c = connection();
  if (c == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kDriverNotLoaded));
  for (std::uint32_t i = 0; i < wire::kMaxDevices; ++i) g_devices[i].index = i;
  g_initialized.fetch_add(1, std::memory_order_relaxed);
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlInit_v2() {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(nvmlInitWithFlags(0));
}
Return nvmlInit() {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(nvmlInitWithFlags(0));
}

Return nvmlShutdown() {
  GPUBROKER_TRACE_ENTRY(kNvml);
  int count = g_initialized.load(std::memory_order_relaxed);
  do {
    if (count <= 0) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  } while (!g_initialized.compare_exchange_weak(count, count - 1, std::memory_order_relaxed));
  GPUBROKER_TRACE_RETURN(kSuccess);
}

const char* nvmlErrorString(Return result) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 17: return "Operating System Call Failed";
    case 18: return "Driver/library version mismatch";
    case 19: return "In use by another client";
    case 999: return "Unknown Error";
    default: return "Unknown Error";
  }
}

// ---- system ---------------------------------------------------------------------------------

// The NVIDIA kernel module's version. The broker's device table does not carry it; on a GPU host
// the module's /proc file says it, and the sim driver has none.
Return nvmlSystemGetDriverVersion(char* version, unsigned length) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (version == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (g_initialized.load(std::memory_order_relaxed) <= 0) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  shim::Connection* c = connection();
  if (c == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  if (c->device_table().simulated != 0) GPUBROKER_TRACE_RETURN(answered(__func__, kNotSupported));
  std::ifstream file("/proc/driver/nvidia/version");
  std::string line;
  if (!file || !std::getline(file, line)) GPUBROKER_TRACE_RETURN(answered(__func__, kNoPermission));
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..."
  const auto module = line.find("Kernel Module");
  if (module == std::string::npos) GPUBROKER_TRACE_RETURN(answered(__func__, kUnknown));
  std::size_t start = line.find_first_not_of(' ', module + 13);
  std::size_t end = start == std::string::npos ? std::string::npos : line.find(' ', start);
  if (start == std::string::npos) GPUBROKER_TRACE_RETURN(answered(__func__, kUnknown));
  const std::string text = line.substr(start, end == std::string::npos ? std::string::npos : end - start);
  GPUBROKER_TRACE_RETURN(answered(__func__, copy_string(version, length, text)));
}

Return nvmlSystemGetCudaDriverVersion_v2(int* version) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (version == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (g_initialized.load(std::memory_order_relaxed) <= 0) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  shim::Connection* c = connection();
  if (c == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  *version = c->device_table().driver_version;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlSystemGetCudaDriverVersion(int* version) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(nvmlSystemGetCudaDriverVersion_v2(version));
}

// ---- devices --------------------------------------------------------------------------------

Return nvmlDeviceGetCount_v2(unsigned* count) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (count == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (g_initialized.load(std::memory_order_relaxed) <= 0) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  shim::Connection* c = connection();
  if (c == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  *count = static_cast<unsigned>(c->visible().size());
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlDeviceGetCount(unsigned* count) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(nvmlDeviceGetCount_v2(count));
}

Return nvmlDeviceGetHandleByIndex_v2(unsigned index, Device** device) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (device == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (g_initialized.load(std::memory_order_relaxed) <= 0) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  shim::Connection* c = connection();
  if (c == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kUninitialized));
  if (index >= c->visible().size()) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  *device = &g_devices[index];
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlDeviceGetHandleByIndex(unsigned index, Device** device) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(nvmlDeviceGetHandleByIndex_v2(index, device));
}

Return nvmlDeviceGetHandleByUUID(const char* uuid, Device** device) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (uuid == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  GPUBROKER_TRACE_RETURN(answered(
      __func__, find_device(device, [&](const wire::DeviceRecord& d) { return shim::uuid_string(d.uuid) == uuid; })));
}

Return nvmlDeviceGetHandleByPciBusId_v2(const char* bus_id, Device** device) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  unsigned domain = 0, bus = 0, slot = 0;
  if (bus_id == nullptr || !parse_bus_id(bus_id, domain, bus, slot))
    GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  GPUBROKER_TRACE_RETURN(
      answered(__func__, find_device(device, [&](const wire::DeviceRecord& d) {
                 return static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID]) == domain &&
                        static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID]) == bus &&
                        static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID]) == slot;
               })));
}

Return nvmlDeviceGetHandleByPciBusId(const char* bus_id, Device** device) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  GPUBROKER_TRACE_RETURN(answered(__func__, nvmlDeviceGetHandleByPciBusId_v2(bus_id, device)));
}

Return nvmlDeviceGetIndex(Device* device, unsigned* index) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (index == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (record_of(device) == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  *index = device->index;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlDeviceGetName(Device* device, char* name, unsigned length) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  const wire::DeviceRecord* d = record_of(device);
  if (d == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  GPUBROKER_TRACE_RETURN(answered(__func__, copy_string(name, std::min(length, kNameBytes), d->name)));
}

Return nvmlDeviceGetUUID(Device* device, char* uuid, unsigned length) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  const wire::DeviceRecord* d = record_of(device);
  if (d == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  GPUBROKER_TRACE_RETURN(
      answered(__func__, copy_string(uuid, std::min(length, kUuidBytes), shim::uuid_string(d->uuid))));
}

Return nvmlDeviceGetPciInfo_v3(Device* device, nvmlPciInfo_t* pci) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (pci == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  const wire::DeviceRecord* d = record_of(device);
  if (d == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  std::memset(pci, 0, sizeof *pci);
  pci->domain = static_cast<unsigned>(d->attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID]);
  pci->bus = static_cast<unsigned>(d->attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID]);
  pci->device = static_cast<unsigned>(d->attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID]);
  // CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID is NVML's pciDeviceId: device id << 16 | vendor id.
  pci->pciDeviceId = static_cast<unsigned>(d->attributes[cuda::CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID]);
  pci->pciSubSystemId = static_cast<unsigned>(d->attributes[cuda::CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID]);
  const std::string bus_id = nvml_bus_id(*d);
  std::snprintf(pci->busId, sizeof pci->busId, "%s", bus_id.c_str());
  std::snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%s", bus_id.c_str() + 4);
  GPUBROKER_TRACE_RETURN(kSuccess);
}

// The session's view, the same request (and so the same figures) as cudaMemGetInfo.
Return nvmlDeviceGetMemoryInfo(Device* device, nvmlMemory_t* memory) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (memory == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  std::uint64_t free = 0, total = 0;
  if (const Return r = memory_of(device, free, total); r != kSuccess) GPUBROKER_TRACE_RETURN(answered(__func__, r));
  *memory = nvmlMemory_t{total, free, total - free};
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlDeviceGetMemoryInfo_v2(Device* device, nvmlMemory_v2_t* memory) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (memory == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  if (memory->version != kMemoryV2Version)
    GPUBROKER_TRACE_RETURN(answered(__func__, 25));  // NVML_ERROR_ARGUMENT_VERSION_MISMATCH
  std::uint64_t free = 0, total = 0;
  if (const Return r = memory_of(device, free, total); r != kSuccess) GPUBROKER_TRACE_RETURN(answered(__func__, r));
  memory->total = total;
  memory->reserved = 0;
  memory->free = free;
  memory->used = total - free;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

Return nvmlDeviceGetCudaComputeCapability(Device* device, int* major, int* minor) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (major == nullptr || minor == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  const wire::DeviceRecord* d = record_of(device);
  if (d == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  *major = d->attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR];
  *minor = d->attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR];
  GPUBROKER_TRACE_RETURN(kSuccess);
}

// nvmlComputeMode_t and CUcomputemode share their values (0 default, 2 prohibited, 3 exclusive
// process).
Return nvmlDeviceGetComputeMode(Device* device, int* mode) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (mode == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  const wire::DeviceRecord* d = record_of(device);
  if (d == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, handle_error()));
  *mode = d->attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_MODE];
  GPUBROKER_TRACE_RETURN(kSuccess);
}

// Not carried by the broker's device table: not invented.
Return nvmlDeviceGetUtilizationRates(Device* device, nvmlUtilization_t* utilization) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (utilization == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  GPUBROKER_TRACE_RETURN(answered(__func__, record_of(device) == nullptr ? handle_error() : kNotSupported));
}

Return nvmlDeviceGetTemperature(Device* device, int /*sensor*/, unsigned* temperature) {
  GPUBROKER_TRACE_ENTRY(kNvml);
  if (temperature == nullptr) GPUBROKER_TRACE_RETURN(answered(__func__, kInvalidArgument));
  GPUBROKER_TRACE_RETURN(answered(__func__, record_of(device) == nullptr ? handle_error() : kNotSupported));
}

}  // extern "C"
