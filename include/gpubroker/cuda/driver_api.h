// The CUDA driver API subset the broker uses, declared by the project itself (no CUDA toolkit
// needed to build), and the table of function pointers through which the broker calls it.
//
// Two libraries implement this table: the system's libcuda.so.1 on a GPU host, and the project's
// sim driver (libgpubroker-sim.so) everywhere else. The broker resolves every entry of
// GPUBROKER_DRIVER_API with dlsym by the exported symbol name, so both must export exactly these
// names with exactly these signatures. tests/cuda_abi_test.cc checks the types and values here
// against NVIDIA's cuda.h.
//
// Names mirror CUDA's so that code reads like the driver API documentation. Everything lives in
// namespace gpubroker::cuda, so that NVIDIA's own header can sit beside it in one translation unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace gpubroker::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUmemGenericAllocationHandle = unsigned long long;
using CUdevice_attribute = int;
using CUfunction_attribute = int;
using CUfunc_cache = int;
using CUstreamCaptureMode = int;
using CUstreamCaptureStatus = int;
using CUmemAllocationGranularity_flags = int;
using CUmemorytype = int;

using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
// CUlimit: CU_LIMIT_STACK_SIZE 0, PRINTF_FIFO_SIZE 1, MALLOC_HEAP_SIZE 2,
// DEV_RUNTIME_SYNC_DEPTH 3, DEV_RUNTIME_PENDING_LAUNCH_COUNT 4, MAX_L2_FETCH_GRANULARITY 5,
// PERSISTING_L2_CACHE_SIZE 6 (the runtime's cudaLimit has the same values).
using CUlimit = int;
inline constexpr CUlimit CU_LIMIT_MAX = 7;
using CUevent = struct CUevent_st*;
using CUgraph = struct CUgraph_st*;
using CUgraphExec = struct CUgraphExec_st*;
using CUarray = struct CUarray_st*;
using CUgraphNode = struct CUgraphNode_st*;

using CUhostFn = void (*)(void* user_data);

enum CUgraphExecUpdateResult : int {
  CU_GRAPH_EXEC_UPDATE_SUCCESS = 0,
  CU_GRAPH_EXEC_UPDATE_ERROR = 1,
  CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED = 2,
  CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED = 3,
  CU_GRAPH_EXEC_UPDATE_ERROR_FUNCTION_CHANGED = 4,
  CU_GRAPH_EXEC_UPDATE_ERROR_PARAMETERS_CHANGED = 5,
  CU_GRAPH_EXEC_UPDATE_ERROR_NOT_SUPPORTED = 6,
};

struct CUgraphExecUpdateResultInfo {
  CUgraphExecUpdateResult result;
  CUgraphNode errorNode;
  CUgraphNode errorFromNode;
};

// cuLaunchKernel's `extra` markers: a packed parameter buffer instead of per-argument pointers.
inline void* const CU_LAUNCH_PARAM_END = reinterpret_cast<void*>(0x00);
inline void* const CU_LAUNCH_PARAM_BUFFER_POINTER = reinterpret_cast<void*>(0x01);
inline void* const CU_LAUNCH_PARAM_BUFFER_SIZE = reinterpret_cast<void*>(0x02);

struct CUuuid {
  char bytes[16];
};

struct CUmemLocation {
  int type;  // CU_MEM_LOCATION_TYPE_*
  int id;
};

struct CUmemAllocationProp {
  int type;                  // CU_MEM_ALLOCATION_TYPE_*
  int requestedHandleTypes;  // CU_MEM_HANDLE_TYPE_*
  CUmemLocation location;
  void* win32HandleMetaData;
  struct {
    unsigned char compressionType;
    unsigned char gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
  } allocFlags;
};

// cuLaunchKernelEx. The value is a 64-byte union in cuda.h; the members the broker sets are ints.
enum CUlaunchAttributeID : int {
  CU_LAUNCH_ATTRIBUTE_IGNORE = 0,
  CU_LAUNCH_ATTRIBUTE_COOPERATIVE = 2,
  CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6,
  CU_LAUNCH_ATTRIBUTE_PRIORITY = 8,
};

union CUlaunchAttributeValue {
  char pad[64];
  int cooperative;
  int programmaticStreamSerializationAllowed;
  int priority;
};

struct CUlaunchAttribute {
  CUlaunchAttributeID id;
  char pad[8 - sizeof(CUlaunchAttributeID)];
  CUlaunchAttributeValue value;
};

struct CUlaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ;
  unsigned blockDimX, blockDimY, blockDimZ;
  unsigned sharedMemBytes;
  CUstream hStream;
  CUlaunchAttribute* attrs;
  unsigned numAttrs;
};
static_assert(sizeof(CUlaunchAttribute) == 72 && sizeof(CUlaunchConfig) == 56);

struct CUmemAccessDesc {
  CUmemLocation location;
  int flags;  // CU_MEM_ACCESS_FLAGS_PROT_*
};

struct CUDA_MEMCPY2D {
  std::size_t srcXInBytes;
  std::size_t srcY;
  CUmemorytype srcMemoryType;
  const void* srcHost;
  CUdeviceptr srcDevice;
  CUarray srcArray;
  std::size_t srcPitch;
  std::size_t dstXInBytes;
  std::size_t dstY;
  CUmemorytype dstMemoryType;
  void* dstHost;
  CUdeviceptr dstDevice;
  CUarray dstArray;
  std::size_t dstPitch;
  std::size_t WidthInBytes;
  std::size_t Height;
};

// A memcpy node's parameters (cuGraphMemcpyNodeGetParams): a 3D copy of Depth slices of Height
// rows of WidthInBytes bytes; on each side a row is Pitch bytes after the one before, and a slice
// Height rows after the one before.
struct CUDA_MEMCPY3D {
  std::size_t srcXInBytes;
  std::size_t srcY;
  std::size_t srcZ;
  std::size_t srcLOD;
  CUmemorytype srcMemoryType;
  const void* srcHost;
  CUdeviceptr srcDevice;
  CUarray srcArray;
  void* reserved0;
  std::size_t srcPitch;
  std::size_t srcHeight;
  std::size_t dstXInBytes;
  std::size_t dstY;
  std::size_t dstZ;
  std::size_t dstLOD;
  CUmemorytype dstMemoryType;
  void* dstHost;
  CUdeviceptr dstDevice;
  CUarray dstArray;
  void* reserved1;
  std::size_t dstPitch;
  std::size_t dstHeight;
  std::size_t WidthInBytes;
  std::size_t Height;
  std::size_t Depth;
};

// A memset node's parameters: `height` rows of `width` elements of `elementSize` bytes (1, 2
// or 4), rows `pitch` bytes apart.
struct CUDA_MEMSET_NODE_PARAMS {
  CUdeviceptr dst;
  std::size_t pitch;
  unsigned int value;
  unsigned int elementSize;
  std::size_t width;
  std::size_t height;
};

// Graph node types (CUgraphNodeType).
using CUgraphNodeType = int;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_KERNEL = 0;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_MEMCPY = 1;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_MEMSET = 2;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_HOST = 3;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_GRAPH = 4;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_EMPTY = 5;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_WAIT_EVENT = 6;
inline constexpr CUgraphNodeType CU_GRAPH_NODE_TYPE_EVENT_RECORD = 7;

// Results (CUresult values).
inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
inline constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
inline constexpr CUresult CUDA_ERROR_NOT_INITIALIZED = 3;
inline constexpr CUresult CUDA_ERROR_DEINITIALIZED = 4;
inline constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
inline constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
inline constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
inline constexpr CUresult CUDA_ERROR_INVALID_CONTEXT = 201;
inline constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
inline constexpr CUresult CUDA_ERROR_INVALID_PTX = 218;
inline constexpr CUresult CUDA_ERROR_INVALID_HANDLE = 400;
inline constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
inline constexpr CUresult CUDA_ERROR_NOT_READY = 600;
inline constexpr CUresult CUDA_ERROR_ILLEGAL_ADDRESS = 700;
inline constexpr CUresult CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701;
inline constexpr CUresult CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712;
inline constexpr CUresult CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED = 713;
inline constexpr CUresult CUDA_ERROR_LAUNCH_FAILED = 719;
inline constexpr CUresult CUDA_ERROR_NOT_PERMITTED = 800;
inline constexpr CUresult CUDA_ERROR_UNSUPPORTED_LIMIT = 215;
inline constexpr CUresult CUDA_ERROR_NOT_SUPPORTED = 801;
inline constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900;
inline constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901;
inline constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903;
inline constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906;
inline constexpr CUresult CUDA_ERROR_CAPTURED_EVENT = 907;
inline constexpr CUresult CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE = 910;
inline constexpr CUresult CUDA_ERROR_UNKNOWN = 999;

// The errors that poison a CUDA context: after one, every call in it fails the same way until the
// context is gone. The runtime's codes are the same numbers (cudaErrorIllegalAddress is 700, ...),
// so the runtime shim asks this too.
constexpr bool poisons_context(int status) {
  switch (status) {
    case 214:  // CUDA_ERROR_ECC_UNCORRECTABLE
    case 700:  // CUDA_ERROR_ILLEGAL_ADDRESS
    case 702:  // CUDA_ERROR_LAUNCH_TIMEOUT
    case 710:  // CUDA_ERROR_ASSERT
    case 714:  // CUDA_ERROR_HARDWARE_STACK_ERROR
    case 715:  // CUDA_ERROR_ILLEGAL_INSTRUCTION
    case 716:  // CUDA_ERROR_MISALIGNED_ADDRESS
    case 717:  // CUDA_ERROR_INVALID_ADDRESS_SPACE
    case 718:  // CUDA_ERROR_INVALID_PC
    case 719:  // CUDA_ERROR_LAUNCH_FAILED
      return true;
    default:
      return false;
  }
}

// Device attributes (CUdevice_attribute values) the broker reads to fill cudaDeviceProp and
// answer cuDeviceGetAttribute. The sim driver answers every value from 1 to
// CU_DEVICE_ATTRIBUTE_MAX - 1 (0 where an attribute does not apply).
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X = 2;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y = 3;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z = 4;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X = 5;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y = 6;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z = 7;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY = 9;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_WARP_SIZE = 10;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_PITCH = 11;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK = 12;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT = 14;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_GPU_OVERLAP = 15;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT = 17;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_INTEGRATED = 18;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY = 19;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_MODE = 20;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS = 31;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_ECC_ENABLED = 32;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_PCI_BUS_ID = 33;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID = 34;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_TCC_DRIVER = 35;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT = 40;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING = 41;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID = 50;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT = 51;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED = 78;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED = 79;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED = 80;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR = 82;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY = 83;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD = 84;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID = 85;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED = 86;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO = 87;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS = 88;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS = 89;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED = 90;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM = 91;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COOPERATIVE_MULTI_DEVICE_LAUNCH = 96;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CAN_FLUSH_REMOTE_WRITES = 98;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED = 99;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES = 100;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST = 101;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR = 106;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE = 108;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE = 109;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK = 111;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH = 120;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_NUMA_CONFIG = 130;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_NUMA_ID = 131;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MPS_ENABLED = 133;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID = 134;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID = 139;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID = 140;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_HOST_NUMA_MULTINODE_IPC_SUPPORTED = 143;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX = 148;  // one past the last (13.0)

// Function attributes (CUfunction_attribute values).
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES = 2;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_NUM_REGS = 4;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_PTX_VERSION = 5;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_BINARY_VERSION = 6;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_CACHE_MODE_CA = 7;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
inline constexpr CUfunction_attribute CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT = 9;

// Stream flags, capture modes and statuses, event flags.
inline constexpr unsigned CU_STREAM_DEFAULT = 0;
inline constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
inline constexpr CUstreamCaptureMode CU_STREAM_CAPTURE_MODE_GLOBAL = 0;
inline constexpr CUstreamCaptureMode CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
inline constexpr CUstreamCaptureMode CU_STREAM_CAPTURE_MODE_RELAXED = 2;
inline constexpr CUstreamCaptureStatus CU_STREAM_CAPTURE_STATUS_NONE = 0;
inline constexpr CUstreamCaptureStatus CU_STREAM_CAPTURE_STATUS_ACTIVE = 1;
inline constexpr CUstreamCaptureStatus CU_STREAM_CAPTURE_STATUS_INVALIDATED = 2;
inline constexpr unsigned CU_EVENT_DEFAULT = 0;
inline constexpr unsigned CU_EVENT_BLOCKING_SYNC = 1;
inline constexpr unsigned CU_EVENT_DISABLE_TIMING = 2;
inline constexpr unsigned CU_EVENT_RECORD_EXTERNAL = 1;  // cuEventRecordWithFlags: a record node in a capture

// Host registration flags, VMM enums.
inline constexpr unsigned CU_MEMHOSTREGISTER_PORTABLE = 1;
inline constexpr unsigned CU_MEMHOSTREGISTER_DEVICEMAP = 2;
inline constexpr int CU_MEM_ALLOCATION_TYPE_PINNED = 1;
inline constexpr int CU_MEM_LOCATION_TYPE_DEVICE = 1;
inline constexpr int CU_MEM_ACCESS_FLAGS_PROT_NONE = 0;
inline constexpr int CU_MEM_ACCESS_FLAGS_PROT_READ = 1;
inline constexpr int CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3;
inline constexpr CUmemAllocationGranularity_flags CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0;
inline constexpr CUmemAllocationGranularity_flags CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1;
inline constexpr CUmemorytype CU_MEMORYTYPE_HOST = 1;
inline constexpr CUmemorytype CU_MEMORYTYPE_DEVICE = 2;

// Every driver function the broker calls: X(member, exported symbol, function type). The type is
// written like a declaration, so name its pointer std::add_pointer_t<type> (not type*).
//
// Two lists: the driver and its devices, which the broker's device layer calls at start-up
// (initialization, enumeration, primary contexts, making a context current, error names), and the
// calls that run in a context, which the layer offers to the rest of the broker only through a
// context (broker/device_context.h) that makes itself current first.
#define GPUBROKER_DRIVER_API(X) GPUBROKER_DRIVER_SETUP_API(X) GPUBROKER_DRIVER_CONTEXT_API(X)

#define GPUBROKER_DRIVER_SETUP_API(X)                                                                       \
  X(init, cuInit, CUresult(unsigned int flags))                                                             \
  X(driver_get_version, cuDriverGetVersion, CUresult(int* version))                                         \
  X(device_get_count, cuDeviceGetCount, CUresult(int* count))                                               \
  X(device_get, cuDeviceGet, CUresult(CUdevice* device, int ordinal))                                       \
  X(device_get_name, cuDeviceGetName, CUresult(char* name, int length, CUdevice device))                    \
  X(device_get_uuid, cuDeviceGetUuid_v2, CUresult(CUuuid* uuid, CUdevice device))                           \
  X(device_total_mem, cuDeviceTotalMem_v2, CUresult(std::size_t* bytes, CUdevice device))                   \
  X(device_get_attribute, cuDeviceGetAttribute,                                                             \
    CUresult(int* value, CUdevice_attribute attribute, CUdevice device))                                    \
  X(device_get_pci_bus_id, cuDeviceGetPCIBusId, CUresult(char* bus_id, int length, CUdevice device))        \
  X(primary_ctx_retain, cuDevicePrimaryCtxRetain, CUresult(CUcontext* context, CUdevice device))            \
  X(primary_ctx_release, cuDevicePrimaryCtxRelease_v2, CUresult(CUdevice device))                           \
  X(ctx_set_current, cuCtxSetCurrent, CUresult(CUcontext context))                                          \
  X(ctx_get_current, cuCtxGetCurrent, CUresult(CUcontext* context))                                         \
  X(ctx_create, cuCtxCreate_v2, CUresult(CUcontext* context, unsigned int flags, CUdevice device))           \
  X(ctx_destroy, cuCtxDestroy_v2, CUresult(CUcontext context))                                               \
  X(ctx_pop_current, cuCtxPopCurrent_v2, CUresult(CUcontext* context))                                       \
  X(get_error_name, cuGetErrorName, CUresult(CUresult error, const char** name))                            \
  X(get_error_string, cuGetErrorString, CUresult(CUresult error, const char** text))

#define GPUBROKER_DRIVER_CONTEXT_API(X)                                                                     \
  X(ctx_synchronize, cuCtxSynchronize, CUresult())                                                          \
  X(ctx_get_limit, cuCtxGetLimit, CUresult(std::size_t* value, CUlimit limit))                               \
  X(ctx_set_limit, cuCtxSetLimit, CUresult(CUlimit limit, std::size_t value))                                \
  X(mem_alloc, cuMemAlloc_v2, CUresult(CUdeviceptr* pointer, std::size_t bytes))                            \
  X(mem_free, cuMemFree_v2, CUresult(CUdeviceptr pointer))                                                  \
  X(mem_get_info, cuMemGetInfo_v2, CUresult(std::size_t* free, std::size_t* total))                         \
  X(memcpy_htod_async, cuMemcpyHtoDAsync_v2,                                                                \
    CUresult(CUdeviceptr destination, const void* source, std::size_t bytes, CUstream stream))              \
  X(memcpy_dtoh_async, cuMemcpyDtoHAsync_v2,                                                                \
    CUresult(void* destination, CUdeviceptr source, std::size_t bytes, CUstream stream))                    \
  X(memcpy_dtod_async, cuMemcpyDtoDAsync_v2,                                                                \
    CUresult(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes, CUstream stream))              \
  X(memcpy_peer_async, cuMemcpyPeerAsync,                                                                   \
    CUresult(CUdeviceptr destination, CUcontext destination_context, CUdeviceptr source,                    \
             CUcontext source_context, std::size_t bytes, CUstream stream))                                 \
  X(memcpy_2d_async, cuMemcpy2DAsync_v2, CUresult(const CUDA_MEMCPY2D* copy, CUstream stream))              \
  X(memset_d8_async, cuMemsetD8Async,                                                                       \
    CUresult(CUdeviceptr destination, unsigned char value, std::size_t count, CUstream stream))             \
  X(memset_d16_async, cuMemsetD16Async,                                                                     \
    CUresult(CUdeviceptr destination, unsigned short value, std::size_t count, CUstream stream))            \
  X(memset_d32_async, cuMemsetD32Async,                                                                     \
    CUresult(CUdeviceptr destination, unsigned value, std::size_t count, CUstream stream))                  \
  X(mem_host_register, cuMemHostRegister_v2, CUresult(void* pointer, std::size_t bytes, unsigned flags))    \
  X(mem_host_unregister, cuMemHostUnregister, CUresult(void* pointer))                                      \
  X(mem_address_reserve, cuMemAddressReserve,                                                               \
    CUresult(CUdeviceptr* pointer, std::size_t size, std::size_t alignment, CUdeviceptr hint,               \
             unsigned long long flags))                                                                     \
  X(mem_address_free, cuMemAddressFree, CUresult(CUdeviceptr pointer, std::size_t size))                    \
  X(mem_create, cuMemCreate,                                                                                \
    CUresult(CUmemGenericAllocationHandle* handle, std::size_t size, const CUmemAllocationProp* prop,       \
             unsigned long long flags))                                                                     \
  X(mem_release, cuMemRelease, CUresult(CUmemGenericAllocationHandle handle))                               \
  X(mem_map, cuMemMap,                                                                                      \
    CUresult(CUdeviceptr pointer, std::size_t size, std::size_t offset,                                     \
             CUmemGenericAllocationHandle handle, unsigned long long flags))                                \
  X(mem_unmap, cuMemUnmap, CUresult(CUdeviceptr pointer, std::size_t size))                                 \
  X(mem_set_access, cuMemSetAccess,                                                                         \
    CUresult(CUdeviceptr pointer, std::size_t size, const CUmemAccessDesc* descriptors, std::size_t count)) \
  X(mem_get_allocation_granularity, cuMemGetAllocationGranularity,                                          \
    CUresult(std::size_t* granularity, const CUmemAllocationProp* prop,                                     \
             CUmemAllocationGranularity_flags option))                                                      \
  X(stream_create_with_priority, cuStreamCreateWithPriority,                                                \
    CUresult(CUstream* stream, unsigned flags, int priority))                                               \
  X(stream_destroy, cuStreamDestroy_v2, CUresult(CUstream stream))                                          \
  X(stream_synchronize, cuStreamSynchronize, CUresult(CUstream stream))                                     \
  X(stream_query, cuStreamQuery, CUresult(CUstream stream))                                                 \
  X(stream_wait_event, cuStreamWaitEvent, CUresult(CUstream stream, CUevent event, unsigned flags))         \
  X(stream_get_priority, cuStreamGetPriority, CUresult(CUstream stream, int* priority))                     \
  X(launch_host_func, cuLaunchHostFunc, CUresult(CUstream stream, CUhostFn function, void* user_data))      \
  X(event_create, cuEventCreate, CUresult(CUevent* event, unsigned flags))                                  \
  X(event_record, cuEventRecord, CUresult(CUevent event, CUstream stream))                                  \
  X(event_record_with_flags, cuEventRecordWithFlags,                                                        \
    CUresult(CUevent event, CUstream stream, unsigned flags))                                                \
  X(event_query, cuEventQuery, CUresult(CUevent event))                                                     \
  X(event_synchronize, cuEventSynchronize, CUresult(CUevent event))                                         \
  X(event_elapsed_time, cuEventElapsedTime_v2, CUresult(float* milliseconds, CUevent start, CUevent end))   \
  X(event_destroy, cuEventDestroy_v2, CUresult(CUevent event))                                              \
  X(stream_begin_capture, cuStreamBeginCapture_v2, CUresult(CUstream stream, CUstreamCaptureMode mode))     \
  X(stream_end_capture, cuStreamEndCapture, CUresult(CUstream stream, CUgraph* graph))                      \
  X(stream_is_capturing, cuStreamIsCapturing, CUresult(CUstream stream, CUstreamCaptureStatus* status))     \
  X(graph_instantiate, cuGraphInstantiateWithFlags,                                                         \
    CUresult(CUgraphExec* exec, CUgraph graph, unsigned long long flags))                                   \
  X(graph_launch, cuGraphLaunch, CUresult(CUgraphExec exec, CUstream stream))                               \
  X(graph_exec_update, cuGraphExecUpdate_v2,                                                                \
    CUresult(CUgraphExec exec, CUgraph graph, CUgraphExecUpdateResultInfo* info))                           \
  X(graph_exec_destroy, cuGraphExecDestroy, CUresult(CUgraphExec exec))                                     \
  X(graph_destroy, cuGraphDestroy, CUresult(CUgraph graph))                                                 \
  X(graph_get_nodes, cuGraphGetNodes, CUresult(CUgraph graph, CUgraphNode* nodes, std::size_t* count))       \
  X(graph_node_get_type, cuGraphNodeGetType, CUresult(CUgraphNode node, CUgraphNodeType* type))              \
  X(graph_memcpy_node_get_params, cuGraphMemcpyNodeGetParams, CUresult(CUgraphNode node, CUDA_MEMCPY3D* params)) \
  X(graph_memset_node_get_params, cuGraphMemsetNodeGetParams,                                               \
    CUresult(CUgraphNode node, CUDA_MEMSET_NODE_PARAMS* params))                                            \
  X(module_load_data, cuModuleLoadData, CUresult(CUmodule* module, const void* image))                      \
  X(module_unload, cuModuleUnload, CUresult(CUmodule module))                                               \
  X(module_get_function, cuModuleGetFunction, CUresult(CUfunction* function, CUmodule module, const char* name)) \
  X(module_get_global, cuModuleGetGlobal_v2,                                                                \
    CUresult(CUdeviceptr* pointer, std::size_t* bytes, CUmodule module, const char* name))                  \
  X(func_get_attribute, cuFuncGetAttribute, CUresult(int* value, CUfunction_attribute attribute, CUfunction function)) \
  X(func_set_attribute, cuFuncSetAttribute, CUresult(CUfunction function, CUfunction_attribute attribute, int value)) \
  X(func_set_cache_config, cuFuncSetCacheConfig, CUresult(CUfunction function, CUfunc_cache config))        \
  X(func_get_param_info, cuFuncGetParamInfo,                                                                \
    CUresult(CUfunction function, std::size_t index, std::size_t* offset, std::size_t* size))               \
  X(launch_kernel, cuLaunchKernel,                                                                          \
    CUresult(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,      \
             unsigned block_y, unsigned block_z, unsigned shared_bytes, CUstream stream, void** params,     \
             void** extra))                                                                                 \
  X(launch_kernel_ex, cuLaunchKernelEx,                                                                      \
    CUresult(const CUlaunchConfig* config, CUfunction function, void** params, void** extra))                \
  X(occupancy_max_active_blocks, cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,                      \
    CUresult(int* blocks, CUfunction function, int block_size, std::size_t dynamic_shared, unsigned flags))

// The table the broker calls through. Every member is resolved at start-up or the driver is
// refused as incomplete.
struct DriverTable {
#define GPUBROKER_DRIVER_MEMBER(member, symbol, type) std::add_pointer_t<type> member = nullptr;
  GPUBROKER_DRIVER_API(GPUBROKER_DRIVER_MEMBER)
#undef GPUBROKER_DRIVER_MEMBER
};

}  // namespace gpubroker::cuda
