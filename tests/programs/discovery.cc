// Ollama's bootstrap discovery (shared/reference/runner-api-surface.md), replayed through the
// shims: libcudart.so.13, libcuda.so.1 and libnvidia-ml.so.1, each linked the way a runner loads
// them, against a sim broker (run_with_broker.sh).
//
// Pass 1, as the first discovery runner: every device through the runtime (count, properties
// twice, cooperative launch, PCI bus id, driver version, memory), through the driver (Ollama's
// native probe and ggml's VMM probe) and through NVML (memory by UUID, name, PCI info). Every
// library must report the same UUID, PCI id, name and memory figures.
// Pass 2, as the per-device runners: this program runs itself once per device with
// CUDA_VISIBLE_DEVICES=GPU-<uuid> (and GGML_CUDA_INIT=1); each child must see exactly that device,
// with the same identity, and initialize it (memory, a stream, a cuBLAS handle).
//
// Prints each pass's wall time; exits non-zero naming the first mismatch.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gpubroker/cuda/runtime_abi.h"

namespace rt = gpubroker::cuda::rt;

extern "C" {
// libcudart.so.13
int cudaGetDeviceCount(int*);
int cudaGetDeviceProperties(rt::DeviceProp13*, int);
int cudaDeviceGetAttribute(int*, int, int);
int cudaDeviceGetPCIBusId(char*, int, int);
int cudaDriverGetVersion(int*);
int cudaSetDevice(int);
int cudaMemGetInfo(std::size_t*, std::size_t*);
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaStreamCreateWithFlags(void**, unsigned);
int cudaStreamDestroy(void*);
const char* cudaGetErrorString(int);
// libcuda.so.1
int cuInit(unsigned);
int cuDriverGetVersion(int*);
int cuDeviceGetCount(int*);
int cuDeviceGet(int*, int);
int cuDeviceGetAttribute(int*, int, int);
int cuDeviceGetName(char*, int, int);
int cuDeviceTotalMem_v2(std::size_t*, int);
int cuDeviceGetPCIBusId(char*, int, int);
int cuDeviceGetUuid_v2(char*, int);
int cuMemGetInfo_v2(std::size_t*, std::size_t*);
struct AllocationProp {  // CUmemAllocationProp
  int type, requested_handle_types, location_type, location_id;
  void* win32;
  unsigned char flags[8];
};
int cuMemGetAllocationGranularity(std::size_t*, const AllocationProp*, int);
// libnvidia-ml.so.1
int nvmlInit_v2();
int nvmlShutdown();
const char* nvmlErrorString(int);
int nvmlSystemGetDriverVersion(char*, unsigned);
int nvmlSystemGetCudaDriverVersion(int*);
int nvmlDeviceGetHandleByUUID(const char*, void**);
int nvmlDeviceGetName(void*, char*, unsigned);
int nvmlDeviceGetUUID(void*, char*, unsigned);
struct NvmlMemory {
  unsigned long long total, free, used;
};
int nvmlDeviceGetMemoryInfo(void*, NvmlMemory*);
struct NvmlPciInfo {
  char bus_id_legacy[16];
  unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
};
int nvmlDeviceGetPciInfo_v3(void*, NvmlPciInfo*);
// libcublas.so.13
int cublasCreate_v2(void**);
int cublasDestroy_v2(void*);
}

namespace {

constexpr int kCudaDevAttrCooperativeLaunch = 95;
constexpr int kAttrIntegrated = 18, kAttrMajor = 75, kAttrMinor = 76, kAttrVmm = 102;
constexpr int kNvmlNotSupported = 3;

int failures = 0;

#define EXPECT(condition, ...)                                        \
  do {                                                                \
    if (!(condition)) {                                               \
      std::fprintf(stderr, "discovery: %s: ", #condition);            \
      std::fprintf(stderr, __VA_ARGS__);                              \
      std::fprintf(stderr, "\n");                                     \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

std::string uuid_text(const unsigned char* u) {
  char text[48];
  std::snprintf(text, sizeof text, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return text;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

struct Identity {
  std::string uuid, pci, name;
  std::uint64_t total = 0;
};

// One device through all three libraries; returns its identity as the runtime reports it.
Identity discover_device(int device) {
  Identity id;
  rt::DeviceProp13 props{}, again{};
  EXPECT(cudaGetDeviceProperties(&props, device) == 0, "device %d", device);
  EXPECT(cudaGetDeviceProperties(&again, device) == 0, "device %d", device);
  EXPECT(std::memcmp(&props, &again, sizeof props) == 0, "device %d: properties differ between two reads", device);
  id.uuid = uuid_text(reinterpret_cast<const unsigned char*>(&props.uuid));
  char pci[32];
  std::snprintf(pci, sizeof pci, "%04x:%02x:%02x.0", props.pciDomainID, props.pciBusID, props.pciDeviceID);
  id.pci = pci;
  id.name = props.name;
  id.total = props.totalGlobalMem;
  EXPECT(props.sharedMemPerBlockOptin > 0 && props.multiProcessorCount > 0 && props.warpSize == 32, "device %d", device);
  int cooperative = -1;
  EXPECT(cudaDeviceGetAttribute(&cooperative, kCudaDevAttrCooperativeLaunch, device) == 0, "device %d", device);
  char runtime_bus[32] = {};
  EXPECT(cudaDeviceGetPCIBusId(runtime_bus, sizeof runtime_bus, device) == 0, "device %d", device);
  EXPECT(lower(runtime_bus) == id.pci, "runtime bus id %s, properties say %s", runtime_bus, id.pci.c_str());
  std::size_t free = 0, total = 0;
  EXPECT(cudaSetDevice(device) == 0 && cudaMemGetInfo(&free, &total) == 0, "device %d", device);

  // Ollama's native probe and ggml's VMM probe, through libcuda.so.1.
  int cu_device = -1, value = -1;
  EXPECT(cuDeviceGet(&cu_device, device) == 0 && cu_device == device, "device %d", device);
  EXPECT(cuDeviceGetAttribute(&value, kAttrMajor, cu_device) == 0 && value == props.major, "major %d vs %d", value, props.major);
  EXPECT(cuDeviceGetAttribute(&value, kAttrMinor, cu_device) == 0 && value == props.minor, "minor %d vs %d", value, props.minor);
  EXPECT(cuDeviceGetAttribute(&value, kAttrIntegrated, cu_device) == 0 && value == props.integrated, "integrated");
  EXPECT(cuDeviceGetAttribute(&value, kCudaDevAttrCooperativeLaunch, cu_device) == 0 && value == cooperative, "cooperative");
  int vmm = 0;
  EXPECT(cuDeviceGetAttribute(&vmm, kAttrVmm, cu_device) == 0, "VMM attribute");
  if (vmm != 0) {
    AllocationProp prop{};
    prop.type = 1;           // CU_MEM_ALLOCATION_TYPE_PINNED
    prop.location_type = 1;  // CU_MEM_LOCATION_TYPE_DEVICE
    prop.location_id = cu_device;
    std::size_t granularity = 0;
    EXPECT(cuMemGetAllocationGranularity(&granularity, &prop, 1) == 0 && granularity > 0, "granularity %zu", granularity);
  }
  char name[256] = {};
  EXPECT(cuDeviceGetName(name, sizeof name, cu_device) == 0 && id.name == name, "driver name '%s' vs '%s'", name, id.name.c_str());
  std::size_t driver_total = 0;
  EXPECT(cuDeviceTotalMem_v2(&driver_total, cu_device) == 0 && driver_total == id.total, "driver total %zu vs %" PRIu64,
         driver_total, id.total);
  char driver_bus[32] = {};
  EXPECT(cuDeviceGetPCIBusId(driver_bus, sizeof driver_bus, cu_device) == 0 && lower(driver_bus) == id.pci,
         "driver bus id %s vs %s", driver_bus, id.pci.c_str());
  unsigned char uuid[16];
  EXPECT(cuDeviceGetUuid_v2(reinterpret_cast<char*>(uuid), cu_device) == 0 && uuid_text(uuid) == id.uuid,
         "driver uuid %s vs %s", uuid_text(uuid).c_str(), id.uuid.c_str());
  std::size_t driver_free = 0, driver_total_now = 0;
  EXPECT(cuMemGetInfo_v2(&driver_free, &driver_total_now) == 0 && driver_total_now == total && driver_free == free,
         "driver memory %zu/%zu vs runtime %zu/%zu", driver_free, driver_total_now, free, total);

  // NVML, by UUID (older Ollama).
  void* handle = nullptr;
  EXPECT(nvmlDeviceGetHandleByUUID(id.uuid.c_str(), &handle) == 0, "NVML has no device %s", id.uuid.c_str());
  if (handle != nullptr) {
    NvmlMemory memory{};
    EXPECT(nvmlDeviceGetMemoryInfo(handle, &memory) == 0 && memory.total == total && memory.free == free &&
               memory.used == total - free,
           "NVML memory %llu/%llu vs runtime %zu/%zu", memory.free, memory.total, free, total);
    char nvml_name[96] = {};
    EXPECT(nvmlDeviceGetName(handle, nvml_name, sizeof nvml_name) == 0 && id.name == nvml_name, "NVML name '%s'", nvml_name);
    char nvml_uuid[80] = {};
    EXPECT(nvmlDeviceGetUUID(handle, nvml_uuid, sizeof nvml_uuid) == 0 && id.uuid == nvml_uuid, "NVML uuid %s", nvml_uuid);
    NvmlPciInfo pci_info{};
    EXPECT(nvmlDeviceGetPciInfo_v3(handle, &pci_info) == 0 && lower(pci_info.bus_id_legacy) == id.pci &&
               pci_info.domain == static_cast<unsigned>(props.pciDomainID) && pci_info.bus == static_cast<unsigned>(props.pciBusID) &&
               pci_info.device == static_cast<unsigned>(props.pciDeviceID),
           "NVML PCI %s vs %s", pci_info.bus_id_legacy, id.pci.c_str());
  }
  return id;
}

// Pass 1: returns the devices' identities.
std::vector<Identity> first_pass() {
  std::vector<Identity> devices;
  int count = 0;
  const int error = cudaGetDeviceCount(&count);
  EXPECT(error == 0, "cudaGetDeviceCount: %s", cudaGetErrorString(error));
  int driver_version = 0;
  EXPECT(cudaDriverGetVersion(&driver_version) == 0 && driver_version > 0, "runtime driver version %d", driver_version);
  EXPECT(cuInit(0) == 0, "cuInit");
  int cu_version = 0, cu_count = 0;
  EXPECT(cuDriverGetVersion(&cu_version) == 0 && cu_version == driver_version, "driver version %d vs %d", cu_version, driver_version);
  EXPECT(cuDeviceGetCount(&cu_count) == 0 && cu_count == count, "driver count %d vs %d", cu_count, count);
  EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
  char kernel_driver[80] = {};
  const int nvml_driver = nvmlSystemGetDriverVersion(kernel_driver, sizeof kernel_driver);
  EXPECT(nvml_driver == 0 || nvml_driver == kNvmlNotSupported, "nvmlSystemGetDriverVersion: %s", nvmlErrorString(nvml_driver));
  int nvml_cuda = 0;
  EXPECT(nvmlSystemGetCudaDriverVersion(&nvml_cuda) == 0 && nvml_cuda == driver_version, "NVML CUDA version %d", nvml_cuda);
  for (int device = 0; device < count; ++device) devices.push_back(discover_device(device));
  EXPECT(nvmlShutdown() == 0, "nvmlShutdown");
  for (std::size_t i = 0; i < devices.size(); ++i) {
    std::printf("device %zu: %s %s %s %" PRIu64 " bytes, driver %d.%d\n", i, devices[i].uuid.c_str(), devices[i].pci.c_str(),
                devices[i].name.c_str(), devices[i].total, driver_version / 1000, driver_version % 1000 / 10);
  }
  return devices;
}

// Pass 2, in the child: exactly one device, the one named, initialized.
int initialize_device(const char* uuid, const char* pci, const char* name) {
  const auto start = std::chrono::steady_clock::now();
  int count = 0;
  EXPECT(cudaGetDeviceCount(&count) == 0 && count == 1, "CUDA_VISIBLE_DEVICES=%s: %d devices", uuid, count);
  EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
  if (count == 1) {
    const Identity id = discover_device(0);
    EXPECT(id.uuid == uuid && id.pci == pci && id.name == name, "the child sees %s %s", id.uuid.c_str(), id.pci.c_str());
    void* memory = nullptr;
    void* stream = nullptr;
    void* blas = nullptr;
    EXPECT(cudaSetDevice(0) == 0 && cudaMalloc(&memory, 1 << 20) == 0 && cudaFree(memory) == 0, "device memory");
    EXPECT(cudaStreamCreateWithFlags(&stream, 1) == 0 && cudaStreamDestroy(stream) == 0, "a stream");
    EXPECT(cublasCreate_v2(&blas) == 0 && cublasDestroy_v2(blas) == 0, "a cuBLAS handle");
  }
  EXPECT(nvmlShutdown() == 0, "nvmlShutdown");
  std::printf("pass 2 runner for %s: %.2f ms in the process\n", uuid, ms_since(start));
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--initialize") == 0) return initialize_device(argv[2], argv[3], argv[4]);

  auto start = std::chrono::steady_clock::now();
  const std::vector<Identity> devices = first_pass();
  std::printf("pass 1: %zu devices, %.2f ms\n", devices.size(), ms_since(start));
  EXPECT(!devices.empty(), "no devices");

  std::fflush(stdout);
  for (const Identity& device : devices) {
    start = std::chrono::steady_clock::now();
    const pid_t child = ::fork();
    if (child == 0) {
      ::setenv("CUDA_VISIBLE_DEVICES", device.uuid.c_str(), 1);
      ::setenv("GGML_CUDA_INIT", "1", 1);
      ::execl("/proc/self/exe", argv[0], "--initialize", device.uuid.c_str(), device.pci.c_str(), device.name.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the runner for %s failed (status %d)", device.uuid.c_str(), status);
    std::printf("pass 2 for %s: %.2f ms (start to exit)\n", device.uuid.c_str(), ms_since(start));
  }
  std::printf("%s\n", failures == 0 ? "discovery: identical identities through cudart, libcuda and NVML" : "discovery: FAILED");
  return failures == 0 ? 0 : 1;
}
