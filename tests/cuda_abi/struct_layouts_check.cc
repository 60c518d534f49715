// Every struct the shims read or write on a caller's behalf, other than cudaDeviceProp: size,
// alignment, and each field's offset and size, against NVIDIA's headers of one major version.
// Handles are checked to be pointers of the same size.
#include <cstddef>
#include <type_traits>

#include "gpubroker/cuda/runtime_abi.h"
#include "tests/cuda_abi/check_support.h"

// NVIDIA's headers after ours: their flag constants are macros that would rename ours.
#include <cuda_runtime_api.h>
#include <fatbinary_section.h>

namespace {

namespace rt = gpubroker::cuda::rt;

#if GPUBROKER_CHECK_CUDA_MAJOR == 12
static_assert(CUDART_VERSION / 1000 == 12, "the include path holds no CUDA 12 runtime header");
using PointerAttributes = rt::PointerAttributes12;
#else
static_assert(CUDART_VERSION / 1000 == 13, "the include path holds no CUDA 13 runtime header");
using PointerAttributes = rt::PointerAttributes13;
#endif

constexpr int kFirstCheck = __COUNTER__;

// Handles.
#define SAME_HANDLE(name)                                                       \
  GPUBROKER_ABI_ASSERT(std::is_pointer_v<rt::name> && std::is_pointer_v<::name> && \
                           sizeof(rt::name) == sizeof(::name),                   \
                       #name " is not a pointer like NVIDIA's")
SAME_HANDLE(cudaStream_t);
SAME_HANDLE(cudaEvent_t);
SAME_HANDLE(cudaGraph_t);
SAME_HANDLE(cudaGraphNode_t);
SAME_HANDLE(cudaGraphExec_t);
SAME_HANDLE(cudaFunction_t);
SAME_HANDLE(cudaKernel_t);
SAME_HANDLE(cudaLibrary_t);
SAME_HANDLE(cudaMemPool_t);
SAME_HANDLE(cudaUserObject_t);
SAME_HANDLE(cudaExternalMemory_t);
SAME_HANDLE(cudaExternalSemaphore_t);
SAME_HANDLE(cudaGraphDeviceNode_t);
SAME_HANDLE(cudaArray_t);
SAME_HANDLE(cudaArray_const_t);
SAME_HANDLE(cudaMipmappedArray_t);
SAME_HANDLE(cudaGraphicsResource_t);
SAME_HANDLE(cudaHostFn_t);
#undef SAME_HANDLE
GPUBROKER_ABI_SAME_SIZE(rt::cudaGraphConditionalHandle, ::cudaGraphConditionalHandle);
GPUBROKER_ABI_SAME_SIZE(rt::cudaError_t, ::cudaError_t);

// dim3, uint3, cudaUUID_t, cudaChannelFormatDesc.
GPUBROKER_ABI_SAME_SIZE(rt::dim3, ::dim3);
GPUBROKER_ABI_SAME_FIELD(rt::dim3, ::dim3, x);
GPUBROKER_ABI_SAME_FIELD(rt::dim3, ::dim3, y);
GPUBROKER_ABI_SAME_FIELD(rt::dim3, ::dim3, z);
GPUBROKER_ABI_SAME_SIZE(rt::uint3, ::uint3);
GPUBROKER_ABI_SAME_FIELD(rt::uint3, ::uint3, x);
GPUBROKER_ABI_SAME_FIELD(rt::uint3, ::uint3, y);
GPUBROKER_ABI_SAME_FIELD(rt::uint3, ::uint3, z);
GPUBROKER_ABI_SAME_SIZE(rt::cudaUUID_t, ::cudaUUID_t);
GPUBROKER_ABI_SAME_FIELD(rt::cudaUUID_t, ::cudaUUID_t, bytes);
GPUBROKER_ABI_SAME_SIZE(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc);
GPUBROKER_ABI_SAME_FIELD(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc, x);
GPUBROKER_ABI_SAME_FIELD(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc, y);
GPUBROKER_ABI_SAME_FIELD(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc, z);
GPUBROKER_ABI_SAME_FIELD(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc, w);
GPUBROKER_ABI_SAME_FIELD(rt::cudaChannelFormatDesc, ::cudaChannelFormatDesc, f);

// cudaPitchedPtr, cudaExtent, cudaPos, cudaMemcpy3DParms.
GPUBROKER_ABI_SAME_SIZE(rt::cudaPitchedPtr, ::cudaPitchedPtr);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPitchedPtr, ::cudaPitchedPtr, ptr);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPitchedPtr, ::cudaPitchedPtr, pitch);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPitchedPtr, ::cudaPitchedPtr, xsize);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPitchedPtr, ::cudaPitchedPtr, ysize);
GPUBROKER_ABI_SAME_SIZE(rt::cudaExtent, ::cudaExtent);
GPUBROKER_ABI_SAME_FIELD(rt::cudaExtent, ::cudaExtent, width);
GPUBROKER_ABI_SAME_FIELD(rt::cudaExtent, ::cudaExtent, height);
GPUBROKER_ABI_SAME_FIELD(rt::cudaExtent, ::cudaExtent, depth);
GPUBROKER_ABI_SAME_SIZE(rt::cudaPos, ::cudaPos);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPos, ::cudaPos, x);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPos, ::cudaPos, y);
GPUBROKER_ABI_SAME_FIELD(rt::cudaPos, ::cudaPos, z);
GPUBROKER_ABI_SAME_SIZE(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, srcArray);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, srcPos);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, srcPtr);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, dstArray);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, dstPos);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, dstPtr);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, extent);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemcpy3DParms, ::cudaMemcpy3DParms, kind);

// Memory pools and locations.
GPUBROKER_ABI_SAME_SIZE(rt::cudaMemLocation, ::cudaMemLocation);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemLocation, ::cudaMemLocation, type);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemLocation, ::cudaMemLocation, id);
GPUBROKER_ABI_SAME_SIZE(rt::cudaMemAccessDesc, ::cudaMemAccessDesc);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemAccessDesc, ::cudaMemAccessDesc, location);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemAccessDesc, ::cudaMemAccessDesc, flags);
GPUBROKER_ABI_SAME_SIZE(rt::cudaMemPoolProps, ::cudaMemPoolProps);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, allocType);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, handleTypes);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, location);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, win32SecurityAttributes);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, maxSize);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, usage);
GPUBROKER_ABI_SAME_FIELD(rt::cudaMemPoolProps, ::cudaMemPoolProps, reserved);

// cudaPointerAttributes: 24 bytes in 12.x, 88 in 13.0.
GPUBROKER_ABI_SAME_SIZE(PointerAttributes, ::cudaPointerAttributes);
GPUBROKER_ABI_SAME_FIELD(PointerAttributes, ::cudaPointerAttributes, type);
GPUBROKER_ABI_SAME_FIELD(PointerAttributes, ::cudaPointerAttributes, device);
GPUBROKER_ABI_SAME_FIELD(PointerAttributes, ::cudaPointerAttributes, devicePointer);
GPUBROKER_ABI_SAME_FIELD(PointerAttributes, ::cudaPointerAttributes, hostPointer);
#if GPUBROKER_CHECK_CUDA_MAJOR == 13
GPUBROKER_ABI_SAME_FIELD(PointerAttributes, ::cudaPointerAttributes, reserved);
#endif

// cudaFuncAttributes.
#define SAME_FUNC_FIELD(field) \
  GPUBROKER_ABI_SAME_FIELD(rt::cudaFuncAttributes, ::cudaFuncAttributes, field)
GPUBROKER_ABI_SAME_SIZE(rt::cudaFuncAttributes, ::cudaFuncAttributes);
SAME_FUNC_FIELD(sharedSizeBytes);
SAME_FUNC_FIELD(constSizeBytes);
SAME_FUNC_FIELD(localSizeBytes);
SAME_FUNC_FIELD(maxThreadsPerBlock);
SAME_FUNC_FIELD(numRegs);
SAME_FUNC_FIELD(ptxVersion);
SAME_FUNC_FIELD(binaryVersion);
SAME_FUNC_FIELD(cacheModeCA);
SAME_FUNC_FIELD(maxDynamicSharedSizeBytes);
SAME_FUNC_FIELD(preferredShmemCarveout);
SAME_FUNC_FIELD(clusterDimMustBeSet);
SAME_FUNC_FIELD(requiredClusterWidth);
SAME_FUNC_FIELD(requiredClusterHeight);
SAME_FUNC_FIELD(requiredClusterDepth);
SAME_FUNC_FIELD(clusterSchedulingPolicyPreference);
SAME_FUNC_FIELD(nonPortableClusterSizeAllowed);
SAME_FUNC_FIELD(reserved);
#undef SAME_FUNC_FIELD

// Launch attributes and cudaLaunchConfig_t.
#define SAME_VALUE_FIELD(field) \
  GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchAttributeValue, ::cudaLaunchAttributeValue, field)
GPUBROKER_ABI_SAME_SIZE(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow);
GPUBROKER_ABI_SAME_FIELD(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow, base_ptr);
GPUBROKER_ABI_SAME_FIELD(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow, num_bytes);
GPUBROKER_ABI_SAME_FIELD(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow, hitRatio);
GPUBROKER_ABI_SAME_FIELD(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow, hitProp);
GPUBROKER_ABI_SAME_FIELD(rt::cudaAccessPolicyWindow, ::cudaAccessPolicyWindow, missProp);
GPUBROKER_ABI_SAME_SIZE(rt::cudaLaunchMemSyncDomainMap, ::cudaLaunchMemSyncDomainMap);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchMemSyncDomainMap, ::cudaLaunchMemSyncDomainMap, default_);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchMemSyncDomainMap, ::cudaLaunchMemSyncDomainMap, remote);
GPUBROKER_ABI_SAME_SIZE(rt::cudaLaunchAttributeValue, ::cudaLaunchAttributeValue);
SAME_VALUE_FIELD(pad);
SAME_VALUE_FIELD(accessPolicyWindow);
SAME_VALUE_FIELD(cooperative);
SAME_VALUE_FIELD(syncPolicy);
SAME_VALUE_FIELD(clusterDim);
SAME_VALUE_FIELD(clusterSchedulingPolicyPreference);
SAME_VALUE_FIELD(programmaticStreamSerializationAllowed);
SAME_VALUE_FIELD(programmaticEvent);
SAME_VALUE_FIELD(priority);
SAME_VALUE_FIELD(memSyncDomainMap);
SAME_VALUE_FIELD(memSyncDomain);
SAME_VALUE_FIELD(preferredClusterDim);
SAME_VALUE_FIELD(launchCompletionEvent);
SAME_VALUE_FIELD(deviceUpdatableKernelNode);
SAME_VALUE_FIELD(sharedMemCarveout);
#if GPUBROKER_CHECK_CUDA_MAJOR == 13
SAME_VALUE_FIELD(nvlinkUtilCentricScheduling);
#endif
#undef SAME_VALUE_FIELD
// Members of the anonymous structs inside the union.
GPUBROKER_ABI_ASSERT(
    offsetof(rt::cudaLaunchAttributeValue, programmaticEvent.triggerAtBlockStart) ==
        offsetof(::cudaLaunchAttributeValue, programmaticEvent.triggerAtBlockStart),
    "programmaticEvent.triggerAtBlockStart");
GPUBROKER_ABI_ASSERT(offsetof(rt::cudaLaunchAttributeValue, launchCompletionEvent.flags) ==
                         offsetof(::cudaLaunchAttributeValue, launchCompletionEvent.flags),
                     "launchCompletionEvent.flags");
GPUBROKER_ABI_ASSERT(offsetof(rt::cudaLaunchAttributeValue, deviceUpdatableKernelNode.devNode) ==
                         offsetof(::cudaLaunchAttributeValue, deviceUpdatableKernelNode.devNode),
                     "deviceUpdatableKernelNode.devNode");
GPUBROKER_ABI_ASSERT(offsetof(rt::cudaLaunchAttributeValue, clusterDim.z) ==
                         offsetof(::cudaLaunchAttributeValue, clusterDim.z),
                     "clusterDim.z");
GPUBROKER_ABI_SAME_SIZE(rt::cudaLaunchAttribute, ::cudaLaunchAttribute);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchAttribute, ::cudaLaunchAttribute, id);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchAttribute, ::cudaLaunchAttribute, val);
GPUBROKER_ABI_SAME_SIZE(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, gridDim);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, blockDim);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, dynamicSmemBytes);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, stream);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, attrs);
GPUBROKER_ABI_SAME_FIELD(rt::cudaLaunchConfig_t, ::cudaLaunchConfig_t, numAttrs);

// Graphs.
GPUBROKER_ABI_SAME_SIZE(rt::cudaGraphExecUpdateResultInfo, ::cudaGraphExecUpdateResultInfo);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphExecUpdateResultInfo, ::cudaGraphExecUpdateResultInfo,
                         result);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphExecUpdateResultInfo, ::cudaGraphExecUpdateResultInfo,
                         errorNode);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphExecUpdateResultInfo, ::cudaGraphExecUpdateResultInfo,
                         errorFromNode);
// Both majors take a cudaGraphExecUpdateResultInfo* as the third argument.
using GraphExecUpdate = ::cudaError_t (*)(::cudaGraphExec_t, ::cudaGraph_t,
                                          ::cudaGraphExecUpdateResultInfo*);
GPUBROKER_ABI_ASSERT((std::is_same_v<decltype(&::cudaGraphExecUpdate), GraphExecUpdate>),
                     "cudaGraphExecUpdate's signature changed");
GPUBROKER_ABI_SAME_SIZE(rt::cudaGraphEdgeData, ::cudaGraphEdgeData);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphEdgeData, ::cudaGraphEdgeData, from_port);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphEdgeData, ::cudaGraphEdgeData, to_port);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphEdgeData, ::cudaGraphEdgeData, type);
GPUBROKER_ABI_SAME_FIELD(rt::cudaGraphEdgeData, ::cudaGraphEdgeData, reserved);

// Fatbin registration.
GPUBROKER_ABI_SAME_SIZE(rt::__fatBinC_Wrapper_t, ::__fatBinC_Wrapper_t);
GPUBROKER_ABI_SAME_FIELD(rt::__fatBinC_Wrapper_t, ::__fatBinC_Wrapper_t, magic);
GPUBROKER_ABI_SAME_FIELD(rt::__fatBinC_Wrapper_t, ::__fatBinC_Wrapper_t, version);
GPUBROKER_ABI_SAME_FIELD(rt::__fatBinC_Wrapper_t, ::__fatBinC_Wrapper_t, data);
GPUBROKER_ABI_SAME_FIELD(rt::__fatBinC_Wrapper_t, ::__fatBinC_Wrapper_t, filename_or_fatbins);
GPUBROKER_ABI_ASSERT(rt::kFatbinWrapperMagic == FATBINC_MAGIC, "FATBINC_MAGIC");
GPUBROKER_ABI_ASSERT(rt::kFatbinWrapperVersion == FATBINC_VERSION, "FATBINC_VERSION");
GPUBROKER_ABI_ASSERT(rt::kFatbinWrapperLinkVersion == FATBINC_LINK_VERSION, "FATBINC_LINK_VERSION");

constexpr int kChecks = __COUNTER__ - kFirstCheck - 1;

}  // namespace

namespace gpubroker::cuda_abi_test {

CheckSummary GPUBROKER_ABI_CHECK_NAME(struct_layouts)() {
  return {"handles and every struct but cudaDeviceProp: size, alignment, field offsets and sizes",
          kChecks, true};
}

}  // namespace gpubroker::cuda_abi_test
