// libcuda.so.1: the driver API calls runners make directly (runner-api-surface.md): discovery,
// the VMM pool of ggml's allocator, memory figures, error strings, and cuGetProcAddress for those.
//
// Discovery is answered in the process from the device table the broker sent at the handshake,
// with CUDA_VISIBLE_DEVICES applied by the client library exactly as libcudart and NVML apply it:
// a CUdevice is the index of a visible device. Nothing here needs cuInit first (the runtime shim
// never calls it, and ggml calls cuDeviceGet after cudaGetDeviceCount): the process's one session
// is made on first use. The VMM calls are requests to the broker, which keeps the session's
// reservations, allocations and mappings, checks every one of them, and reclaims them when the
// session ends.
//
// Everything else the real library exports is a generated stub that logs its name once and
// returns CUDA_ERROR_NOT_SUPPORTED (every libcuda export returns CUresult).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include <string_view>

#include <dlfcn.h>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/calls/protocol.h"
#include "shim/client/calls.h"
#include "shim/client/connection.h"

using namespace gpubroker;
using cuda::CUresult;

namespace {

constexpr CUresult kSuccess = cuda::CUDA_SUCCESS;
constexpr CUresult kInvalidValue = cuda::CUDA_ERROR_INVALID_VALUE;
constexpr CUresult kNotInitialized = cuda::CUDA_ERROR_NOT_INITIALIZED;
constexpr CUresult kInvalidDevice = cuda::CUDA_ERROR_INVALID_DEVICE;
constexpr CUresult kDeviceUnavailable = 46;  // CUDA_ERROR_DEVICE_UNAVAILABLE: the broker is gone

shim::Connection* connection() { return shim::Connection::get(); }

// The visible device `device`, or nullptr.
const wire::DeviceRecord* device_record(int device) {
  shim::Connection* c = connection();
  if (c == nullptr || device < 0 || static_cast<std::size_t>(device) >= c->visible().size()) return nullptr;
  return &c->device(static_cast<std::uint32_t>(device));
}

// The broker's ordinal of visible device `device`, or -1.
std::int64_t broker_ordinal(int device) {
  shim::Connection* c = connection();
  if (c == nullptr || device < 0 || static_cast<std::size_t>(device) >= c->visible().size()) return -1;
  return c->visible()[static_cast<std::size_t>(device)];
}

// The status a lookup failure means: no session at all, or a device that is not visible.
CUresult device_error() { return connection() == nullptr ? kNotInitialized : kInvalidDevice; }

// A synchronous call of row `Kind` (shim/client/calls.h checks the payload and the reply against
// the row); `reply`, when given, receives the row's reply.
template <wire::RequestKind Kind>
CUresult request(const shim::PayloadOf<Kind>& payload, shim::ReplyOf<Kind>* reply = nullptr) {
  shim::Connection* c = connection();
  if (c == nullptr) return kNotInitialized;
  auto answer = shim::call<Kind>(c->session(), payload);
  if (!answer) return kDeviceUnavailable;
  if (reply != nullptr) *reply = answer.value().reply;
  return answer.value().status;
}

void copy_string(char* destination, int length, const char* source) {
  std::strncpy(destination, source, static_cast<std::size_t>(length));
  destination[length - 1] = '\0';
}

// cuMemGetInfo answers for the current context's device: the calling thread's current device,
// which cudaSetDevice sets for libcuda too (it makes that device's primary context current).
CUresult memory_info(std::uint64_t& free, std::uint64_t& total) {
  const std::int64_t ordinal = broker_ordinal(shim::Connection::current_device());
  if (ordinal < 0) return device_error();
  wire::MemInfoResult info{};
  const CUresult r =
      request<wire::RequestKind::kMemGetInfo>(wire::DeviceRequest{static_cast<std::uint32_t>(ordinal), 0}, &info);
  if (r != kSuccess) return r;
  free = info.free;
  total = info.total;
  return kSuccess;
}

struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;
};

constexpr ErrorText kErrors[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {5, "CUDA_ERROR_PROFILER_DISABLED", "profiler disabled while using external profiling tool"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {301, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {401, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {702, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
    {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {800, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText* error_text(CUresult error) {
  for (const ErrorText& e : kErrors) {
    if (e.code == error) return &e;
  }
  return nullptr;
}

}  // namespace

extern "C" {

// ---- initialization and discovery -----------------------------------------------------------

CUresult cuInit(unsigned flags) {
  if (flags != 0) return kInvalidValue;
  shim::Connection* c = connection();
  return c == nullptr || c->visible().empty() ? cuda::CUDA_ERROR_NO_DEVICE : kSuccess;
}

// Like cudaDriverGetVersion: 0 when there is no driver (here: no broker).
CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return kInvalidValue;
  shim::Connection* c = connection();
  *version = c == nullptr ? 0 : c->device_table().driver_version;
  return kSuccess;
}

CUresult cuDeviceGetCount(int* count) {
  if (count == nullptr) return kInvalidValue;
  shim::Connection* c = connection();
  if (c == nullptr) return kNotInitialized;
  *count = static_cast<int>(c->visible().size());
  return kSuccess;
}

CUresult cuDeviceGet(int* device, int ordinal) {
  if (device == nullptr) return kInvalidValue;
  if (device_record(ordinal) == nullptr) return device_error();
  *device = ordinal;
  return kSuccess;
}

CUresult cuDeviceGetAttribute(int* value, int attribute, int device) {
  if (value == nullptr) return kInvalidValue;
  const wire::DeviceRecord* d = device_record(device);
  if (d == nullptr) return device_error();
  if (attribute <= 0 || attribute >= static_cast<int>(wire::kDeviceAttributeCount)) return kInvalidValue;
  *value = d->attributes[attribute];
  return kSuccess;
}

CUresult cuDeviceGetName(char* name, int length, int device) {
  if (name == nullptr || length <= 0) return kInvalidValue;
  const wire::DeviceRecord* d = device_record(device);
  if (d == nullptr) return device_error();
  copy_string(name, length, d->name);
  return kSuccess;
}

CUresult cuDeviceGetUuid_v2(cuda::CUuuid* uuid, int device) {
  if (uuid == nullptr) return kInvalidValue;
  const wire::DeviceRecord* d = device_record(device);
  if (d == nullptr) return device_error();
  std::memcpy(uuid->bytes, d->uuid, sizeof uuid->bytes);
  return kSuccess;
}

CUresult cuDeviceGetUuid(cuda::CUuuid* uuid, int device) { return cuDeviceGetUuid_v2(uuid, device); }

CUresult cuDeviceTotalMem_v2(std::size_t* bytes, int device) {
  if (bytes == nullptr) return kInvalidValue;
  const wire::DeviceRecord* d = device_record(device);
  if (d == nullptr) return device_error();
  *bytes = d->total_bytes;
  return kSuccess;
}

// The CUDA 3.0 form: a 32-bit count, saturated.
CUresult cuDeviceTotalMem(unsigned* bytes, int device) {
  if (bytes == nullptr) return kInvalidValue;
  std::size_t total = 0;
  if (const CUresult r = cuDeviceTotalMem_v2(&total, device); r != kSuccess) return r;
  *bytes = static_cast<unsigned>(std::min<std::size_t>(total, UINT_MAX));
  return kSuccess;
}

CUresult cuDeviceGetPCIBusId(char* bus_id, int length, int device) {
  if (bus_id == nullptr || length <= 0) return kInvalidValue;
  const wire::DeviceRecord* d = device_record(device);
  if (d == nullptr) return device_error();
  copy_string(bus_id, length, d->pci_bus_id);
  return kSuccess;
}

// "domain:bus:device.function" or "bus:device.function", hexadecimal, any case.
CUresult cuDeviceGetByPCIBusId(int* device, const char* bus_id) {
  if (device == nullptr || bus_id == nullptr) return kInvalidValue;
  unsigned domain = 0, bus = 0, slot = 0, function = 0;
  if (std::sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &slot, &function) != 4) {
    domain = 0;
    if (std::sscanf(bus_id, "%x:%x.%x", &bus, &slot, &function) != 3) return kInvalidValue;
  }
  shim::Connection* c = connection();
  if (c == nullptr) return kNotInitialized;
  for (std::size_t i = 0; i < c->visible().size(); ++i) {
    const wire::DeviceRecord& d = c->device(static_cast<std::uint32_t>(i));
    if (static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID]) == domain &&
        static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID]) == bus &&
        static_cast<unsigned>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID]) == slot && function == 0) {
      *device = static_cast<int>(i);
      return kSuccess;
    }
  }
  return kInvalidDevice;
}

// No peer access between devices: see cudaDeviceCanAccessPeer in the runtime shim (copies between
// devices need none).
CUresult cuDeviceCanAccessPeer(int* can_access, int device, int peer) {
  if (can_access == nullptr) return kInvalidValue;
  if (device_record(device) == nullptr || device_record(peer) == nullptr) return device_error();
  *can_access = 0;
  return kSuccess;
}

// ---- memory figures -------------------------------------------------------------------------

// The session's view, the same request (and so the same figures) as cudaMemGetInfo.
CUresult cuMemGetInfo_v2(std::size_t* free, std::size_t* total) {
  if (free == nullptr || total == nullptr) return kInvalidValue;
  std::uint64_t f = 0, t = 0;
  if (const CUresult r = memory_info(f, t); r != kSuccess) return r;
  *free = f;
  *total = t;
  return kSuccess;
}

// The CUDA 3.0 form: 32-bit counts, saturated.
CUresult cuMemGetInfo(unsigned* free, unsigned* total) {
  if (free == nullptr || total == nullptr) return kInvalidValue;
  std::uint64_t f = 0, t = 0;
  if (const CUresult r = memory_info(f, t); r != kSuccess) return r;
  *free = static_cast<unsigned>(std::min<std::uint64_t>(f, UINT_MAX));
  *total = static_cast<unsigned>(std::min<std::uint64_t>(t, UINT_MAX));
  return kSuccess;
}

// ---- error strings --------------------------------------------------------------------------

CUresult cuGetErrorName(CUresult error, const char** name) {
  if (name == nullptr) return kInvalidValue;
  const ErrorText* e = error_text(error);
  *name = e == nullptr ? nullptr : e->name;
  return e == nullptr ? kInvalidValue : kSuccess;
}

CUresult cuGetErrorString(CUresult error, const char** text) {
  if (text == nullptr) return kInvalidValue;
  const ErrorText* e = error_text(error);
  *text = e == nullptr ? nullptr : e->text;
  return e == nullptr ? kInvalidValue : kSuccess;
}

// ---- virtual memory management (ggml's pool) ------------------------------------------------

CUresult cuMemGetAllocationGranularity(std::size_t* granularity, const cuda::CUmemAllocationProp* prop, int option) {
  if (granularity == nullptr || prop == nullptr) return kInvalidValue;
  if (prop->type != cuda::CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != cuda::CU_MEM_LOCATION_TYPE_DEVICE) {
    return kInvalidValue;
  }
  const std::int64_t ordinal = broker_ordinal(prop->location.id);
  if (ordinal < 0) return device_error();
  std::uint64_t value = 0;
  const CUresult r = request<wire::RequestKind::kVmmGranularity>(
      wire::VmmGranularityRequest{static_cast<std::uint32_t>(ordinal), option}, &value);
  if (r == kSuccess) *granularity = value;
  return r;
}

CUresult cuMemAddressReserve(cuda::CUdeviceptr* pointer, std::size_t size, std::size_t alignment,
                             cuda::CUdeviceptr hint, unsigned long long flags) {
  if (pointer == nullptr) return kInvalidValue;
  wire::PointerResult reserved{};
  const CUresult r =
      request<wire::RequestKind::kVmmAddressReserve>(wire::VmmReserveRequest{size, alignment, hint, flags}, &reserved);
  if (r == kSuccess) *pointer = reserved.pointer;
  return r;
}

CUresult cuMemAddressFree(cuda::CUdeviceptr pointer, std::size_t size) {
  return request<wire::RequestKind::kVmmAddressFree>(wire::VmmRangeRequest{pointer, size});
}

// The handle the program holds is the session-local id the broker chose.
CUresult cuMemCreate(cuda::CUmemGenericAllocationHandle* handle, std::size_t size, const cuda::CUmemAllocationProp* prop,
                     unsigned long long flags) {
  if (handle == nullptr || prop == nullptr) return kInvalidValue;
  if (prop->type != cuda::CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != cuda::CU_MEM_LOCATION_TYPE_DEVICE) {
    return kInvalidValue;
  }
  const std::int64_t ordinal = broker_ordinal(prop->location.id);
  if (ordinal < 0) return device_error();
  std::uint64_t id = 0;
  const wire::VmmCreateRequest r{size, static_cast<std::uint32_t>(ordinal), prop->requestedHandleTypes, flags};
  const CUresult status = request<wire::RequestKind::kVmmCreate>(r, &id);
  if (status == kSuccess) *handle = id;
  return status;
}

CUresult cuMemRelease(cuda::CUmemGenericAllocationHandle handle) {
  return request<wire::RequestKind::kVmmRelease>(wire::HandleRequest{handle});
}

CUresult cuMemMap(cuda::CUdeviceptr pointer, std::size_t size, std::size_t offset,
                  cuda::CUmemGenericAllocationHandle handle, unsigned long long flags) {
  return request<wire::RequestKind::kVmmMap>(wire::VmmMapRequest{pointer, size, offset, handle, flags});
}

CUresult cuMemUnmap(cuda::CUdeviceptr pointer, std::size_t size) {
  return request<wire::RequestKind::kVmmUnmap>(wire::VmmRangeRequest{pointer, size});
}

CUresult cuMemSetAccess(cuda::CUdeviceptr pointer, std::size_t size, const cuda::CUmemAccessDesc* descriptors,
                        std::size_t count) {
  if (descriptors == nullptr || count == 0) return kInvalidValue;
  if (count > wire::kMaxVmmAccessDescriptors) return cuda::CUDA_ERROR_NOT_SUPPORTED;
  wire::VmmAccessRequest r{};
  r.pointer = pointer;
  r.size = size;
  r.count = static_cast<std::uint32_t>(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (descriptors[i].location.type != cuda::CU_MEM_LOCATION_TYPE_DEVICE) return kInvalidValue;
    const std::int64_t ordinal = broker_ordinal(descriptors[i].location.id);
    if (ordinal < 0) return device_error();
    r.descriptors[i].location_type = descriptors[i].location.type;
    r.descriptors[i].device = static_cast<std::uint32_t>(ordinal);
    r.descriptors[i].flags = descriptors[i].flags;
  }
  return request<wire::RequestKind::kVmmSetAccess>(r);
}

// ---- cuGetProcAddress -----------------------------------------------------------------------

CUresult cuGetProcAddress_v2(const char* symbol, void** function, int cuda_version, unsigned long long flags,
                             int* symbol_status);
}  // extern "C"

namespace {
void say_static_runtime();
}  // namespace

extern "C" {

// The private export tables of NVIDIA's runtime are not served (see say_static_runtime).
CUresult cuGetExportTable(const void** table, const void* /*id*/) {
  if (table != nullptr) *table = nullptr;
  say_static_runtime();
  return cuda::CUDA_ERROR_NO_DEVICE;
}

CUresult cuGetProcAddress(const char* symbol, void** function, int cuda_version, unsigned long long flags) {
  return cuGetProcAddress_v2(symbol, function, cuda_version, flags, nullptr);
}

}  // extern "C"

namespace {

// What cuGetProcAddress answers: for each driver API name (as the runtime asks, without a _vN
// suffix), the CUDA version from which each of its versions is the one a caller gets (the
// PFN_<name>_v<version> typedefs of CUDA's cudaTypedefs.h), and the export that serves it here;
// an empty export is a version this shim does not serve (the lookup says CUDA_ERROR_NOT_FOUND
// rather than hand out a function of another signature). Rows of one name are in version order.
// tests/driver_api_test.cc checks that every function the shim implements has its row.
struct ProcVersion {
  std::string_view name;
  int since;
  std::string_view symbol;
};

constexpr ProcVersion kProcs[] = {
    {"cuCtxCreate", 2000, ""},
    {"cuCtxCreate", 3020, "cuCtxCreate_v2"},
    {"cuCtxCreate", 11040, "cuCtxCreate_v3"},
    {"cuCtxCreate", 12050, "cuCtxCreate_v4"},
    {"cuCtxDestroy", 2000, ""},
    {"cuCtxDestroy", 4000, "cuCtxDestroy_v2"},
    {"cuCtxGetApiVersion", 3020, "cuCtxGetApiVersion"},
    {"cuCtxGetCurrent", 4000, "cuCtxGetCurrent"},
    {"cuCtxGetDevice", 2000, "cuCtxGetDevice"},
    {"cuCtxGetDevice", 13000, "cuCtxGetDevice_v2"},
    {"cuCtxGetFlags", 7000, "cuCtxGetFlags"},
    {"cuCtxGetLimit", 3010, "cuCtxGetLimit"},
    {"cuCtxGetStreamPriorityRange", 5050, "cuCtxGetStreamPriorityRange"},
    {"cuCtxPopCurrent", 2000, ""},
    {"cuCtxPopCurrent", 4000, "cuCtxPopCurrent_v2"},
    {"cuCtxPushCurrent", 2000, ""},
    {"cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2"},
    {"cuCtxSetCurrent", 4000, "cuCtxSetCurrent"},
    {"cuCtxSetFlags", 12010, "cuCtxSetFlags"},
    {"cuCtxSetLimit", 3010, "cuCtxSetLimit"},
    {"cuCtxSynchronize", 2000, "cuCtxSynchronize"},
    {"cuCtxSynchronize", 13000, "cuCtxSynchronize_v2"},
    {"cuDeviceCanAccessPeer", 4000, "cuDeviceCanAccessPeer"},
    {"cuDeviceGet", 2000, "cuDeviceGet"},
    {"cuDeviceGetAttribute", 2000, "cuDeviceGetAttribute"},
    {"cuDeviceGetByPCIBusId", 4010, "cuDeviceGetByPCIBusId"},
    {"cuDeviceGetCount", 2000, "cuDeviceGetCount"},
    {"cuDeviceGetName", 2000, "cuDeviceGetName"},
    {"cuDeviceGetPCIBusId", 4010, "cuDeviceGetPCIBusId"},
    {"cuDeviceGetUuid", 9020, "cuDeviceGetUuid"},
    {"cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2"},
    {"cuDevicePrimaryCtxGetState", 7000, "cuDevicePrimaryCtxGetState"},
    {"cuDevicePrimaryCtxRelease", 7000, ""},
    {"cuDevicePrimaryCtxRelease", 11000, "cuDevicePrimaryCtxRelease_v2"},
    {"cuDevicePrimaryCtxReset", 7000, ""},
    {"cuDevicePrimaryCtxReset", 11000, "cuDevicePrimaryCtxReset_v2"},
    {"cuDevicePrimaryCtxRetain", 7000, "cuDevicePrimaryCtxRetain"},
    {"cuDevicePrimaryCtxSetFlags", 7000, ""},
    {"cuDevicePrimaryCtxSetFlags", 11000, "cuDevicePrimaryCtxSetFlags_v2"},
    {"cuDeviceTotalMem", 2000, "cuDeviceTotalMem"},
    {"cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2"},
    {"cuDriverGetVersion", 2020, "cuDriverGetVersion"},
    {"cuEventCreate", 2000, "cuEventCreate"},
    {"cuEventDestroy", 2000, ""},
    {"cuEventDestroy", 4000, "cuEventDestroy_v2"},
    {"cuEventElapsedTime", 2000, "cuEventElapsedTime"},
    {"cuEventElapsedTime", 12080, "cuEventElapsedTime_v2"},
    {"cuEventQuery", 2000, "cuEventQuery"},
    {"cuEventRecord", 2000, "cuEventRecord"},
    {"cuEventRecordWithFlags", 11010, "cuEventRecordWithFlags"},
    {"cuEventSynchronize", 2000, "cuEventSynchronize"},
    {"cuFuncGetAttribute", 2020, "cuFuncGetAttribute"},
    {"cuFuncGetName", 12030, "cuFuncGetName"},
    {"cuFuncGetParamInfo", 12040, "cuFuncGetParamInfo"},
    {"cuFuncSetAttribute", 9000, "cuFuncSetAttribute"},
    {"cuFuncSetCacheConfig", 3000, "cuFuncSetCacheConfig"},
    {"cuGetErrorName", 6000, "cuGetErrorName"},
    {"cuGetErrorString", 6000, "cuGetErrorString"},
    {"cuGetExportTable", 3000, "cuGetExportTable"},  // says that a static runtime is not served
    {"cuGetProcAddress", 11030, "cuGetProcAddress"},
    {"cuGetProcAddress", 12000, "cuGetProcAddress_v2"},
    {"cuGraphDestroy", 10000, "cuGraphDestroy"},
    {"cuGraphExecDestroy", 10000, "cuGraphExecDestroy"},
    {"cuGraphInstantiateWithFlags", 11040, "cuGraphInstantiateWithFlags"},
    {"cuGraphLaunch", 10000, "cuGraphLaunch"},
    {"cuInit", 2000, "cuInit"},
    {"cuKernelGetFunction", 12000, "cuKernelGetFunction"},
    {"cuLaunchCooperativeKernel", 9000, "cuLaunchCooperativeKernel"},
    {"cuLaunchHostFunc", 10000, "cuLaunchHostFunc"},
    {"cuLaunchKernel", 4000, "cuLaunchKernel"},
    {"cuLaunchKernelEx", 11060, "cuLaunchKernelEx"},
    {"cuLibraryGetKernel", 12000, "cuLibraryGetKernel"},
    {"cuLibraryGetModule", 12000, "cuLibraryGetModule"},
    {"cuLibraryLoadData", 12000, "cuLibraryLoadData"},
    {"cuLibraryLoadFromFile", 12000, "cuLibraryLoadFromFile"},
    {"cuLibraryUnload", 12000, "cuLibraryUnload"},
    {"cuMemAddressFree", 10020, "cuMemAddressFree"},
    {"cuMemAddressReserve", 10020, "cuMemAddressReserve"},
    {"cuMemAlloc", 2000, ""},
    {"cuMemAlloc", 3020, "cuMemAlloc_v2"},
    {"cuMemAllocAsync", 11020, "cuMemAllocAsync"},
    {"cuMemAllocHost", 2000, ""},
    {"cuMemAllocHost", 3020, "cuMemAllocHost_v2"},
    {"cuMemAllocPitch", 2000, ""},
    {"cuMemAllocPitch", 3020, "cuMemAllocPitch_v2"},
    {"cuMemCreate", 10020, "cuMemCreate"},
    {"cuMemFree", 2000, ""},
    {"cuMemFree", 3020, "cuMemFree_v2"},
    {"cuMemFreeAsync", 11020, "cuMemFreeAsync"},
    {"cuMemFreeHost", 2000, "cuMemFreeHost"},
    {"cuMemGetAddressRange", 2000, ""},
    {"cuMemGetAddressRange", 3020, "cuMemGetAddressRange_v2"},
    {"cuMemGetAllocationGranularity", 10020, "cuMemGetAllocationGranularity"},
    {"cuMemGetInfo", 2000, "cuMemGetInfo"},
    {"cuMemGetInfo", 3020, "cuMemGetInfo_v2"},
    {"cuMemHostAlloc", 2020, "cuMemHostAlloc"},
    {"cuMemHostGetDevicePointer", 2020, ""},
    {"cuMemHostGetDevicePointer", 3020, "cuMemHostGetDevicePointer_v2"},
    {"cuMemHostRegister", 4000, ""},
    {"cuMemHostRegister", 6050, "cuMemHostRegister_v2"},
    {"cuMemHostUnregister", 4000, "cuMemHostUnregister"},
    {"cuMemMap", 10020, "cuMemMap"},
    {"cuMemRelease", 10020, "cuMemRelease"},
    {"cuMemSetAccess", 10020, "cuMemSetAccess"},
    {"cuMemUnmap", 10020, "cuMemUnmap"},
    {"cuMemcpy", 4000, "cuMemcpy"},
    {"cuMemcpy2D", 2000, ""},
    {"cuMemcpy2D", 3020, "cuMemcpy2D_v2"},
    {"cuMemcpy2DAsync", 2000, ""},
    {"cuMemcpy2DAsync", 3020, "cuMemcpy2DAsync_v2"},
    {"cuMemcpy2DUnaligned", 2000, ""},
    {"cuMemcpy2DUnaligned", 3020, "cuMemcpy2DUnaligned_v2"},
    {"cuMemcpyAsync", 4000, "cuMemcpyAsync"},
    {"cuMemcpyDtoD", 2000, ""},
    {"cuMemcpyDtoD", 3020, "cuMemcpyDtoD_v2"},
    {"cuMemcpyDtoDAsync", 3000, ""},
    {"cuMemcpyDtoDAsync", 3020, "cuMemcpyDtoDAsync_v2"},
    {"cuMemcpyDtoH", 2000, ""},
    {"cuMemcpyDtoH", 3020, "cuMemcpyDtoH_v2"},
    {"cuMemcpyDtoHAsync", 2000, ""},
    {"cuMemcpyDtoHAsync", 3020, "cuMemcpyDtoHAsync_v2"},
    {"cuMemcpyHtoD", 2000, ""},
    {"cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2"},
    {"cuMemcpyHtoDAsync", 2000, ""},
    {"cuMemcpyHtoDAsync", 3020, "cuMemcpyHtoDAsync_v2"},
    {"cuMemsetD16", 2000, ""},
    {"cuMemsetD16", 3020, "cuMemsetD16_v2"},
    {"cuMemsetD16Async", 3020, "cuMemsetD16Async"},
    {"cuMemsetD32", 2000, ""},
    {"cuMemsetD32", 3020, "cuMemsetD32_v2"},
    {"cuMemsetD32Async", 3020, "cuMemsetD32Async"},
    {"cuMemsetD8", 2000, ""},
    {"cuMemsetD8", 3020, "cuMemsetD8_v2"},
    {"cuMemsetD8Async", 3020, "cuMemsetD8Async"},
    {"cuModuleGetFunction", 2000, "cuModuleGetFunction"},
    {"cuModuleGetGlobal", 2000, ""},
    {"cuModuleGetGlobal", 3020, "cuModuleGetGlobal_v2"},
    {"cuModuleLoad", 2000, "cuModuleLoad"},
    {"cuModuleLoadData", 2000, "cuModuleLoadData"},
    {"cuModuleLoadDataEx", 2010, "cuModuleLoadDataEx"},
    {"cuModuleLoadFatBinary", 2000, "cuModuleLoadFatBinary"},
    {"cuModuleUnload", 2000, "cuModuleUnload"},
    {"cuOccupancyMaxActiveBlocksPerMultiprocessor", 6050, "cuOccupancyMaxActiveBlocksPerMultiprocessor"},
    {"cuPointerGetAttribute", 4000, "cuPointerGetAttribute"},
    {"cuPointerGetAttributes", 7000, "cuPointerGetAttributes"},
    {"cuStreamAddCallback", 5000, "cuStreamAddCallback"},
    {"cuStreamBeginCapture", 10000, ""},
    {"cuStreamBeginCapture", 10010, "cuStreamBeginCapture_v2"},
    {"cuStreamCreate", 2000, "cuStreamCreate"},
    {"cuStreamCreateWithPriority", 5050, "cuStreamCreateWithPriority"},
    {"cuStreamDestroy", 2000, ""},
    {"cuStreamDestroy", 4000, "cuStreamDestroy_v2"},
    {"cuStreamEndCapture", 10000, "cuStreamEndCapture"},
    {"cuStreamGetFlags", 5050, "cuStreamGetFlags"},
    {"cuStreamGetPriority", 5050, "cuStreamGetPriority"},
    {"cuStreamIsCapturing", 10000, "cuStreamIsCapturing"},
    {"cuStreamQuery", 2000, "cuStreamQuery"},
    {"cuStreamSynchronize", 2000, "cuStreamSynchronize"},
    {"cuStreamWaitEvent", 3020, "cuStreamWaitEvent"},
};

constexpr int kProcFound = 0, kProcNotFound = 1, kProcVersionNotSufficient = 2;  // CUdriverProcAddressQueryResult
constexpr unsigned long long kPerThreadDefaultStream = 2;  // CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM

// NVIDIA's own runtime, linked statically into a program (nvcc's default, -cudart static), asks
// for its private export tables, which no program or library of ours asks for: said once on
// stderr, with what to do instead.
void say_static_runtime() {
  static std::once_flag said;
  std::call_once(said, [] {
    std::fputs("gpubroker: this program links the CUDA runtime statically (nvcc's default, -cudart static), which "
               "gpubroker does not serve: rebuild it with -cudart shared (or use a build or wheel that loads "
               "libcudart.so), so that it loads gpubroker's runtime; it sees no CUDA device until then\n",
               stderr);
  });
}

// This library's handle, for dlsym of its own exports.
void* self() {
  static void* handle = [] {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&cuGetProcAddress_v2), &info) == 0 || info.dli_fname == nullptr) return static_cast<void*>(nullptr);
    return ::dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }();
  return handle;
}

}  // namespace

extern "C" CUresult cuGetProcAddress_v2(const char* symbol, void** function, int cuda_version, unsigned long long flags,
                                        int* symbol_status) {
  if (symbol == nullptr || function == nullptr || flags > 2) return kInvalidValue;
  *function = nullptr;
  if (symbol_status != nullptr) *symbol_status = kProcNotFound;
  const ProcVersion* chosen = nullptr;
  bool known = false;
  for (const ProcVersion& v : kProcs) {
    if (v.name != symbol) continue;
    known = true;
    if (v.since <= cuda_version) chosen = &v;
  }
  if (chosen == nullptr || chosen->symbol.empty() || self() == nullptr) {
    if (known && chosen == nullptr && symbol_status != nullptr) *symbol_status = kProcVersionNotSufficient;
    return cuda::CUDA_ERROR_NOT_FOUND;
  }
  std::string name(chosen->symbol);
  void* found = nullptr;
  if (flags == kPerThreadDefaultStream) {  // the _ptds/_ptsz form where one exists (an alias of the same function)
    found = ::dlsym(self(), (name + "_ptds").c_str());
    if (found == nullptr) found = ::dlsym(self(), (name + "_ptsz").c_str());
  }
  if (found == nullptr) found = ::dlsym(self(), name.c_str());
  if (found == nullptr) return cuda::CUDA_ERROR_NOT_FOUND;
  *function = found;
  if (symbol_status != nullptr) *symbol_status = kProcFound;
  return kSuccess;
}
