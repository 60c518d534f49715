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

GPUBROKER_ABI_ASSERT(rt::cudaHostAllocDefault == nv_cudaHostAllocDefault, "cudaHostAllocDefault");
GPUBROKER_ABI_ASSERT(rt::cudaHostAllocPortable == nv_cudaHostAllocPortable, "cudaHostAllocPortable");
GPUBROKER_ABI_ASSERT(rt::cudaHostAllocMapped == nv_cudaHostAllocMapped, "cudaHostAllocMapped");
GPUBROKER_ABI_ASSERT(rt::cudaHostAllocWriteCombined == nv_cudaHostAllocWriteCombined, "cudaHostAllocWriteCombined");
GPUBROKER_ABI_ASSERT(rt::cudaHostRegisterDefault == nv_cudaHostRegisterDefault, "cudaHostRegisterDefault");
GPUBROKER_ABI_ASSERT(rt::cudaHostRegisterPortable == nv_cudaHostRegisterPortable, "cudaHostRegisterPortable");
GPUBROKER_ABI_ASSERT(rt::cudaHostRegisterMapped == nv_cudaHostRegisterMapped, "cudaHostRegisterMapped");
GPUBROKER_ABI_ASSERT(rt::cudaHostRegisterIoMemory == nv_cudaHostRegisterIoMemory, "cudaHostRegisterIoMemory");
GPUBROKER_ABI_ASSERT(rt::cudaHostRegisterReadOnly == nv_cudaHostRegisterReadOnly, "cudaHostRegisterReadOnly");
GPUBROKER_ABI_ASSERT(rt::cudaPeerAccessDefault == nv_cudaPeerAccessDefault, "cudaPeerAccessDefault");
GPUBROKER_ABI_ASSERT(rt::cudaStreamDefault == nv_cudaStreamDefault, "cudaStreamDefault");
GPUBROKER_ABI_ASSERT(rt::cudaStreamNonBlocking == nv_cudaStreamNonBlocking, "cudaStreamNonBlocking");
GPUBROKER_ABI_ASSERT(rt::cudaEventDefault == nv_cudaEventDefault, "cudaEventDefault");
GPUBROKER_ABI_ASSERT(rt::cudaEventBlockingSync == nv_cudaEventBlockingSync, "cudaEventBlockingSync");
GPUBROKER_ABI_ASSERT(rt::cudaEventDisableTiming == nv_cudaEventDisableTiming, "cudaEventDisableTiming");
GPUBROKER_ABI_ASSERT(rt::cudaEventInterprocess == nv_cudaEventInterprocess, "cudaEventInterprocess");
GPUBROKER_ABI_ASSERT(rt::cudaEventRecordDefault == nv_cudaEventRecordDefault, "cudaEventRecordDefault");
GPUBROKER_ABI_ASSERT(rt::cudaEventRecordExternal == nv_cudaEventRecordExternal, "cudaEventRecordExternal");
GPUBROKER_ABI_ASSERT(rt::cudaEventWaitDefault == nv_cudaEventWaitDefault, "cudaEventWaitDefault");
GPUBROKER_ABI_ASSERT(rt::cudaEventWaitExternal == nv_cudaEventWaitExternal, "cudaEventWaitExternal");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceScheduleAuto == nv_cudaDeviceScheduleAuto, "cudaDeviceScheduleAuto");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceScheduleSpin == nv_cudaDeviceScheduleSpin, "cudaDeviceScheduleSpin");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceScheduleYield == nv_cudaDeviceScheduleYield, "cudaDeviceScheduleYield");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceScheduleBlockingSync == nv_cudaDeviceScheduleBlockingSync, "cudaDeviceScheduleBlockingSync");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceBlockingSync == nv_cudaDeviceBlockingSync, "cudaDeviceBlockingSync");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceScheduleMask == nv_cudaDeviceScheduleMask, "cudaDeviceScheduleMask");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceMapHost == nv_cudaDeviceMapHost, "cudaDeviceMapHost");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceLmemResizeToMax == nv_cudaDeviceLmemResizeToMax, "cudaDeviceLmemResizeToMax");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceSyncMemops == nv_cudaDeviceSyncMemops, "cudaDeviceSyncMemops");
GPUBROKER_ABI_ASSERT(rt::cudaDeviceMask == nv_cudaDeviceMask, "cudaDeviceMask");
GPUBROKER_ABI_ASSERT(rt::cudaArrayDefault == nv_cudaArrayDefault, "cudaArrayDefault");
GPUBROKER_ABI_ASSERT(rt::cudaArrayLayered == nv_cudaArrayLayered, "cudaArrayLayered");
GPUBROKER_ABI_ASSERT(rt::cudaArraySurfaceLoadStore == nv_cudaArraySurfaceLoadStore, "cudaArraySurfaceLoadStore");
GPUBROKER_ABI_ASSERT(rt::cudaArrayCubemap == nv_cudaArrayCubemap, "cudaArrayCubemap");
GPUBROKER_ABI_ASSERT(rt::cudaArrayTextureGather == nv_cudaArrayTextureGather, "cudaArrayTextureGather");
GPUBROKER_ABI_ASSERT(rt::cudaArrayColorAttachment == nv_cudaArrayColorAttachment, "cudaArrayColorAttachment");
GPUBROKER_ABI_ASSERT(rt::cudaArraySparse == nv_cudaArraySparse, "cudaArraySparse");
GPUBROKER_ABI_ASSERT(rt::cudaArrayDeferredMapping == nv_cudaArrayDeferredMapping, "cudaArrayDeferredMapping");
GPUBROKER_ABI_ASSERT(rt::cudaIpcMemLazyEnablePeerAccess == nv_cudaIpcMemLazyEnablePeerAccess, "cudaIpcMemLazyEnablePeerAccess");
GPUBROKER_ABI_ASSERT(rt::cudaMemAttachGlobal == nv_cudaMemAttachGlobal, "cudaMemAttachGlobal");
GPUBROKER_ABI_ASSERT(rt::cudaMemAttachHost == nv_cudaMemAttachHost, "cudaMemAttachHost");
GPUBROKER_ABI_ASSERT(rt::cudaMemAttachSingle == nv_cudaMemAttachSingle, "cudaMemAttachSingle");
GPUBROKER_ABI_ASSERT(rt::cudaOccupancyDefault == nv_cudaOccupancyDefault, "cudaOccupancyDefault");
GPUBROKER_ABI_ASSERT(rt::cudaOccupancyDisableCachingOverride == nv_cudaOccupancyDisableCachingOverride, "cudaOccupancyDisableCachingOverride");
GPUBROKER_ABI_ASSERT(rt::cudaCpuDeviceId == nv_cudaCpuDeviceId, "cudaCpuDeviceId");
GPUBROKER_ABI_ASSERT(rt::cudaInvalidDeviceId == nv_cudaInvalidDeviceId, "cudaInvalidDeviceId");
GPUBROKER_ABI_ASSERT(rt::cudaInitDeviceFlagsAreValid == nv_cudaInitDeviceFlagsAreValid, "cudaInitDeviceFlagsAreValid");

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
