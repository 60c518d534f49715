// The flag constants (macros in NVIDIA's headers, typed constants in ours) and the two reserved
// stream handles. NVIDIA's values are captured before their macros are undefined, so that the
// names can be used for ours afterwards.
#include <cstdint>

#include "gpubroker/cuda/runtime_abi.h"
#include "tests/cuda_abi/check_support.h"

// NVIDIA's headers after ours: their flag constants are macros that would rename ours.
#include <cuda_runtime_api.h>

#if GPUBROKER_CHECK_CUDA_MAJOR == 12
static_assert(CUDART_VERSION / 1000 == 12, "the include path holds no CUDA 12 runtime header");
#else
static_assert(CUDART_VERSION / 1000 == 13, "the include path holds no CUDA 13 runtime header");
#endif

namespace {

constexpr long long nv_cudaHostAllocDefault = cudaHostAllocDefault;
constexpr long long nv_cudaHostAllocPortable = cudaHostAllocPortable;
constexpr long long nv_cudaHostAllocMapped = cudaHostAllocMapped;
constexpr long long nv_cudaHostAllocWriteCombined = cudaHostAllocWriteCombined;
constexpr long long nv_cudaHostRegisterDefault = cudaHostRegisterDefault;
constexpr long long nv_cudaHostRegisterPortable = cudaHostRegisterPortable;
constexpr long long nv_cudaHostRegisterMapped = cudaHostRegisterMapped;
constexpr long long nv_cudaHostRegisterIoMemory = cudaHostRegisterIoMemory;
constexpr long long nv_cudaHostRegisterReadOnly = cudaHostRegisterReadOnly;
constexpr long long nv_cudaPeerAccessDefault = cudaPeerAccessDefault;
constexpr long long nv_cudaStreamDefault = cudaStreamDefault;
constexpr long long nv_cudaStreamNonBlocking = cudaStreamNonBlocking;
constexpr long long nv_cudaEventDefault = cudaEventDefault;
constexpr long long nv_cudaEventBlockingSync = cudaEventBlockingSync;
constexpr long long nv_cudaEventDisableTiming = cudaEventDisableTiming;
constexpr long long nv_cudaEventInterprocess = cudaEventInterprocess;
constexpr long long nv_cudaEventRecordDefault = cudaEventRecordDefault;
constexpr long long nv_cudaEventRecordExternal = cudaEventRecordExternal;
constexpr long long nv_cudaEventWaitDefault = cudaEventWaitDefault;
constexpr long long nv_cudaEventWaitExternal = cudaEventWaitExternal;
constexpr long long nv_cudaDeviceScheduleAuto = cudaDeviceScheduleAuto;
constexpr long long nv_cudaDeviceScheduleSpin = cudaDeviceScheduleSpin;
constexpr long long nv_cudaDeviceScheduleYield = cudaDeviceScheduleYield;
constexpr long long nv_cudaDeviceScheduleBlockingSync = cudaDeviceScheduleBlockingSync;
constexpr long long nv_cudaDeviceBlockingSync = cudaDeviceBlockingSync;
constexpr long long nv_cudaDeviceScheduleMask = cudaDeviceScheduleMask;
constexpr long long nv_cudaDeviceMapHost = cudaDeviceMapHost;
constexpr long long nv_cudaDeviceLmemResizeToMax = cudaDeviceLmemResizeToMax;
constexpr long long nv_cudaDeviceSyncMemops = cudaDeviceSyncMemops;
constexpr long long nv_cudaDeviceMask = cudaDeviceMask;
constexpr long long nv_cudaArrayDefault = cudaArrayDefault;
constexpr long long nv_cudaArrayLayered = cudaArrayLayered;
constexpr long long nv_cudaArraySurfaceLoadStore = cudaArraySurfaceLoadStore;
constexpr long long nv_cudaArrayCubemap = cudaArrayCubemap;
constexpr long long nv_cudaArrayTextureGather = cudaArrayTextureGather;
constexpr long long nv_cudaArrayColorAttachment = cudaArrayColorAttachment;
constexpr long long nv_cudaArraySparse = cudaArraySparse;
constexpr long long nv_cudaArrayDeferredMapping = cudaArrayDeferredMapping;
constexpr long long nv_cudaIpcMemLazyEnablePeerAccess = cudaIpcMemLazyEnablePeerAccess;
constexpr long long nv_cudaMemAttachGlobal = cudaMemAttachGlobal;
constexpr long long nv_cudaMemAttachHost = cudaMemAttachHost;
constexpr long long nv_cudaMemAttachSingle = cudaMemAttachSingle;
constexpr long long nv_cudaOccupancyDefault = cudaOccupancyDefault;
constexpr long long nv_cudaOccupancyDisableCachingOverride = cudaOccupancyDisableCachingOverride;
constexpr long long nv_cudaCpuDeviceId = cudaCpuDeviceId;
constexpr long long nv_cudaInvalidDeviceId = cudaInvalidDeviceId;
constexpr long long nv_cudaInitDeviceFlagsAreValid = cudaInitDeviceFlagsAreValid;

// Reinterpret casts are not constant expressions: these two are compared at run time.
cudaStream_t nv_stream_legacy() { return cudaStreamLegacy; }
cudaStream_t nv_stream_per_thread() { return cudaStreamPerThread; }

}  // namespace

#undef cudaHostAllocDefault
#undef cudaHostAllocPortable
#undef cudaHostAllocMapped
#undef cudaHostAllocWriteCombined
#undef cudaHostRegisterDefault
#undef cudaHostRegisterPortable
#undef cudaHostRegisterMapped
#undef cudaHostRegisterIoMemory
#undef cudaHostRegisterReadOnly
#undef cudaPeerAccessDefault
#undef cudaStreamDefault
#undef cudaStreamNonBlocking
#undef cudaEventDefault
#undef cudaEventBlockingSync
#undef cudaEventDisableTiming
#undef cudaEventInterprocess
#undef cudaEventRecordDefault
#undef cudaEventRecordExternal
#undef cudaEventWaitDefault
#undef cudaEventWaitExternal
#undef cudaDeviceScheduleAuto
#undef cudaDeviceScheduleSpin
#undef cudaDeviceScheduleYield
#undef cudaDeviceScheduleBlockingSync
#undef cudaDeviceBlockingSync
#undef cudaDeviceScheduleMask
#undef cudaDeviceMapHost
#undef cudaDeviceLmemResizeToMax
#undef cudaDeviceSyncMemops
#undef cudaDeviceMask
#undef cudaArrayDefault
#undef cudaArrayLayered
#undef cudaArraySurfaceLoadStore
#undef cudaArrayCubemap
#undef cudaArrayTextureGather
#undef cudaArrayColorAttachment
#undef cudaArraySparse
#undef cudaArrayDeferredMapping
#undef cudaIpcMemLazyEnablePeerAccess
#undef cudaMemAttachGlobal
#undef cudaMemAttachHost
#undef cudaMemAttachSingle
#undef cudaOccupancyDefault
#undef cudaOccupancyDisableCachingOverride
#undef cudaCpuDeviceId
#undef cudaInvalidDeviceId
#undef cudaInitDeviceFlagsAreValid
#undef cudaStreamLegacy
#undef cudaStreamPerThread

namespace {

namespace rt = gpubroker::cuda::rt;

constexpr int kFirstCheck = __COUNTER__;

#define SAME_FLAG(name) GPUBROKER_ABI_ASSERT(rt::name == nv_##name, #name)

SAME_FLAG(cudaHostAllocDefault);
SAME_FLAG(cudaHostAllocPortable);
SAME_FLAG(cudaHostAllocMapped);
SAME_FLAG(cudaHostAllocWriteCombined);
SAME_FLAG(cudaHostRegisterDefault);
SAME_FLAG(cudaHostRegisterPortable);
SAME_FLAG(cudaHostRegisterMapped);
SAME_FLAG(cudaHostRegisterIoMemory);
SAME_FLAG(cudaHostRegisterReadOnly);
SAME_FLAG(cudaPeerAccessDefault);
SAME_FLAG(cudaStreamDefault);
SAME_FLAG(cudaStreamNonBlocking);
SAME_FLAG(cudaEventDefault);
SAME_FLAG(cudaEventBlockingSync);
SAME_FLAG(cudaEventDisableTiming);
SAME_FLAG(cudaEventInterprocess);
SAME_FLAG(cudaEventRecordDefault);
SAME_FLAG(cudaEventRecordExternal);
SAME_FLAG(cudaEventWaitDefault);
SAME_FLAG(cudaEventWaitExternal);
SAME_FLAG(cudaDeviceScheduleAuto);
SAME_FLAG(cudaDeviceScheduleSpin);
SAME_FLAG(cudaDeviceScheduleYield);
SAME_FLAG(cudaDeviceScheduleBlockingSync);
SAME_FLAG(cudaDeviceBlockingSync);
SAME_FLAG(cudaDeviceScheduleMask);
SAME_FLAG(cudaDeviceMapHost);
SAME_FLAG(cudaDeviceLmemResizeToMax);
SAME_FLAG(cudaDeviceSyncMemops);
SAME_FLAG(cudaDeviceMask);
SAME_FLAG(cudaArrayDefault);
SAME_FLAG(cudaArrayLayered);
SAME_FLAG(cudaArraySurfaceLoadStore);
SAME_FLAG(cudaArrayCubemap);
SAME_FLAG(cudaArrayTextureGather);
SAME_FLAG(cudaArrayColorAttachment);
SAME_FLAG(cudaArraySparse);
SAME_FLAG(cudaArrayDeferredMapping);
SAME_FLAG(cudaIpcMemLazyEnablePeerAccess);
SAME_FLAG(cudaMemAttachGlobal);
SAME_FLAG(cudaMemAttachHost);
SAME_FLAG(cudaMemAttachSingle);
SAME_FLAG(cudaOccupancyDefault);
SAME_FLAG(cudaOccupancyDisableCachingOverride);
SAME_FLAG(cudaCpuDeviceId);
SAME_FLAG(cudaInvalidDeviceId);
SAME_FLAG(cudaInitDeviceFlagsAreValid);
#undef SAME_FLAG

constexpr int kChecks = __COUNTER__ - kFirstCheck - 1;

bool stream_handles_match() {
  return reinterpret_cast<std::uintptr_t>(nv_stream_legacy()) == rt::kStreamLegacyValue &&
         reinterpret_cast<std::uintptr_t>(nv_stream_per_thread()) == rt::kStreamPerThreadValue &&
         reinterpret_cast<std::uintptr_t>(rt::cudaStreamLegacy) == rt::kStreamLegacyValue &&
         reinterpret_cast<std::uintptr_t>(rt::cudaStreamPerThread) == rt::kStreamPerThreadValue;
}

}  // namespace

namespace gpubroker::cuda_abi_test {

CheckSummary GPUBROKER_ABI_CHECK_NAME(flags)() {
  return {"every cudaHostAlloc*/HostRegister*/Stream*/Event*/Device*/... flag constant, and "
          "cudaStreamLegacy/cudaStreamPerThread (at run time)",
          kChecks, stream_handles_match()};
}

}  // namespace gpubroker::cuda_abi_test
