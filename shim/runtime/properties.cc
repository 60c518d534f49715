// cudaGetDeviceProperties for both ABIs, filled from the broker's device table: no round trip.
// CUDA 12 binaries call cudaGetDeviceProperties_v2 with the 1032-byte layout; CUDA 13 binaries
// call cudaGetDeviceProperties with the 1008-byte one (include/gpubroker/cuda/runtime_abi.h).
#include <cstring>
#include <type_traits>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/cuda/runtime_abi.h"
#include "shim/runtime/runtime_state.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
using gpubroker::shim::Connection;
namespace rt = gpubroker::cuda::rt;

namespace {

// Every cudaDeviceProp field that a device attribute answers: X(field, attribute). A field one
// ABI lacks (CUDA 13 removed clockRate and others, added the NUMA fields) is skipped for it.
#define GPUBROKER_PROPERTY_ATTRIBUTES(X)                                                       \
  X(sharedMemPerBlock, MaxSharedMemoryPerBlock) X(regsPerBlock, MaxRegistersPerBlock)          \
  X(warpSize, WarpSize) X(memPitch, MaxPitch) X(maxThreadsPerBlock, MaxThreadsPerBlock)        \
  X(maxThreadsDim[0], MaxBlockDimX) X(maxThreadsDim[1], MaxBlockDimY)                          \
  X(maxThreadsDim[2], MaxBlockDimZ) X(maxGridSize[0], MaxGridDimX)                             \
  X(maxGridSize[1], MaxGridDimY) X(maxGridSize[2], MaxGridDimZ)                                \
  X(totalConstMem, TotalConstantMemory) X(major, ComputeCapabilityMajor)                       \
  X(minor, ComputeCapabilityMinor) X(textureAlignment, TextureAlignment)                       \
  X(texturePitchAlignment, TexturePitchAlignment) X(multiProcessorCount, MultiProcessorCount)  \
  X(integrated, Integrated) X(canMapHostMemory, CanMapHostMemory)                              \
  X(maxTexture1D, MaxTexture1DWidth) X(maxTexture1DMipmap, MaxTexture1DMipmappedWidth)         \
  X(maxTexture1DLinear, MaxTexture1DLinearWidth)                                               \
  X(maxTexture2D[0], MaxTexture2DWidth) X(maxTexture2D[1], MaxTexture2DHeight)                 \
  X(maxTexture2DMipmap[0], MaxTexture2DMipmappedWidth)                                         \
  X(maxTexture2DMipmap[1], MaxTexture2DMipmappedHeight)                                        \
  X(maxTexture2DLinear[0], MaxTexture2DLinearWidth)                                            \
  X(maxTexture2DLinear[1], MaxTexture2DLinearHeight)                                           \
  X(maxTexture2DLinear[2], MaxTexture2DLinearPitch)                                            \
  X(maxTexture2DGather[0], MaxTexture2DGatherWidth)                                            \
  X(maxTexture2DGather[1], MaxTexture2DGatherHeight)                                           \
  X(maxTexture3D[0], MaxTexture3DWidth) X(maxTexture3D[1], MaxTexture3DHeight)                 \
  X(maxTexture3D[2], MaxTexture3DDepth) X(maxTexture3DAlt[0], MaxTexture3DWidthAlt)            \
  X(maxTexture3DAlt[1], MaxTexture3DHeightAlt) X(maxTexture3DAlt[2], MaxTexture3DDepthAlt)     \
  X(maxTextureCubemap, MaxTextureCubemapWidth)                                                 \
  X(maxTexture1DLayered[0], MaxTexture1DLayeredWidth)                                          \
  X(maxTexture1DLayered[1], MaxTexture1DLayeredLayers)                                         \
  X(maxTexture2DLayered[0], MaxTexture2DLayeredWidth)                                          \
  X(maxTexture2DLayered[1], MaxTexture2DLayeredHeight)                                         \
  X(maxTexture2DLayered[2], MaxTexture2DLayeredLayers)                                         \
  X(maxTextureCubemapLayered[0], MaxTextureCubemapLayeredWidth)                                \
  X(maxTextureCubemapLayered[1], MaxTextureCubemapLayeredLayers)                               \
  X(maxSurface1D, MaxSurface1DWidth) X(maxSurface2D[0], MaxSurface2DWidth)                     \
  X(maxSurface2D[1], MaxSurface2DHeight) X(maxSurface3D[0], MaxSurface3DWidth)                 \
  X(maxSurface3D[1], MaxSurface3DHeight) X(maxSurface3D[2], MaxSurface3DDepth)                 \
  X(maxSurface1DLayered[0], MaxSurface1DLayeredWidth)                                          \
  X(maxSurface1DLayered[1], MaxSurface1DLayeredLayers)                                         \
  X(maxSurface2DLayered[0], MaxSurface2DLayeredWidth)                                          \
  X(maxSurface2DLayered[1], MaxSurface2DLayeredHeight)                                         \
  X(maxSurface2DLayered[2], MaxSurface2DLayeredLayers)                                         \
  X(maxSurfaceCubemap, MaxSurfaceCubemapWidth)                                                 \
  X(maxSurfaceCubemapLayered[0], MaxSurfaceCubemapLayeredWidth)                                \
  X(maxSurfaceCubemapLayered[1], MaxSurfaceCubemapLayeredLayers)                               \
  X(surfaceAlignment, SurfaceAlignment) X(concurrentKernels, ConcurrentKernels)                \
  X(ECCEnabled, EccEnabled) X(pciBusID, PciBusId) X(pciDeviceID, PciDeviceId)                  \
  X(pciDomainID, PciDomainId) X(tccDriver, TccDriver) X(asyncEngineCount, AsyncEngineCount)    \
  X(unifiedAddressing, UnifiedAddressing) X(memoryBusWidth, GlobalMemoryBusWidth)              \
  X(l2CacheSize, L2CacheSize) X(persistingL2CacheMaxSize, MaxPersistingL2CacheSize)            \
  X(maxThreadsPerMultiProcessor, MaxThreadsPerMultiProcessor)                                  \
  X(streamPrioritiesSupported, StreamPrioritiesSupported)                                      \
  X(globalL1CacheSupported, GlobalL1CacheSupported) X(localL1CacheSupported, LocalL1CacheSupported) \
  X(sharedMemPerMultiprocessor, MaxSharedMemoryPerMultiprocessor)                              \
  X(regsPerMultiprocessor, MaxRegistersPerMultiprocessor) X(managedMemory, ManagedMemory)      \
  X(isMultiGpuBoard, IsMultiGpuBoard) X(multiGpuBoardGroupID, MultiGpuBoardGroupID)            \
  X(hostNativeAtomicSupported, HostNativeAtomicSupported)                                      \
  X(pageableMemoryAccess, PageableMemoryAccess) X(concurrentManagedAccess, ConcurrentManagedAccess) \
  X(computePreemptionSupported, ComputePreemptionSupported)                                    \
  X(canUseHostPointerForRegisteredMem, CanUseHostPointerForRegisteredMem)                      \
  X(cooperativeLaunch, CooperativeLaunch) X(sharedMemPerBlockOptin, MaxSharedMemoryPerBlockOptin) \
  X(pageableMemoryAccessUsesHostPageTables, PageableMemoryAccessUsesHostPageTables)            \
  X(directManagedMemAccessFromHost, DirectManagedMemAccessFromHost)                            \
  X(maxBlocksPerMultiProcessor, MaxBlocksPerMultiprocessor)                                    \
  X(accessPolicyMaxWindowSize, MaxAccessPolicyWindowSize)                                      \
  X(reservedSharedMemPerBlock, ReservedSharedMemoryPerBlock)                                   \
  X(hostRegisterSupported, HostRegisterSupported)                                              \
  X(sparseCudaArraySupported, SparseCudaArraySupported)                                        \
  X(hostRegisterReadOnlySupported, HostRegisterReadOnlySupported)                              \
  X(timelineSemaphoreInteropSupported, TimelineSemaphoreInteropSupported)                      \
  X(memoryPoolsSupported, MemoryPoolsSupported) X(gpuDirectRDMASupported, GPUDirectRDMASupported) \
  X(gpuDirectRDMAFlushWritesOptions, GPUDirectRDMAFlushWritesOptions)                          \
  X(gpuDirectRDMAWritesOrdering, GPUDirectRDMAWritesOrdering)                                  \
  X(memoryPoolSupportedHandleTypes, MemoryPoolSupportedHandleTypes)                            \
  X(deferredMappingCudaArraySupported, DeferredMappingCudaArraySupported)                      \
  X(ipcEventSupported, IpcEventSupport) X(clusterLaunch, ClusterLaunch)                        \
  X(unifiedFunctionPointers, Reserved129) /* cudaDevAttrUnifiedFunctionPointers in 12.x */     \
  X(clockRate, ClockRate) X(deviceOverlap, GpuOverlap) X(kernelExecTimeoutEnabled, KernelExecTimeout) \
  X(computeMode, ComputeMode) X(memoryClockRate, MemoryClockRate)                              \
  X(singleToDoublePrecisionPerfRatio, SingleToDoublePrecisionPerfRatio)                        \
  X(cooperativeMultiDeviceLaunch, CooperativeMultiDeviceLaunch) X(deviceNumaConfig, NumaConfig) \
  X(deviceNumaId, NumaId) X(mpsEnabled, MpsEnabled) X(hostNumaId, HostNumaId)                  \
  X(gpuPciDeviceID, GpuPciDeviceId) X(gpuPciSubsystemID, GpuPciSubsystemId)                    \
  X(hostNumaMultinodeIpcSupported, HostNumaMultinodeIpcSupported)

template <class Prop>
void fill_properties(Prop& p, const wire::DeviceRecord& d) {
  std::memset(&p, 0, sizeof(p));
  std::strncpy(p.name, d.name, sizeof(p.name) - 1);
  std::memcpy(&p.uuid, d.uuid, sizeof(d.uuid));
  p.totalGlobalMem = d.total_bytes;  // luid and luidDeviceNodeMask are Windows's: zero here
#define GPUBROKER_FILL_FIELD(field, attribute)                                       \
  if constexpr (requires { p.field; }) {                                             \
    p.field = static_cast<std::remove_cvref_t<decltype(p.field)>>(d.attributes[rt::cudaDevAttr##attribute]); \
  }
  GPUBROKER_PROPERTY_ATTRIBUTES(GPUBROKER_FILL_FIELD)
#undef GPUBROKER_FILL_FIELD
}

template <class Prop>
int get_properties(Prop* prop, int device) {
  if (prop == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  if (device < 0 || static_cast<std::size_t>(device) >= c->visible().size()) return record(kErrorInvalidDevice);
  fill_properties(*prop, c->device(static_cast<std::uint32_t>(device)));
  return kSuccess;
}

}  // namespace

extern "C" {

#if GPUBROKER_CUDART_ABI == 12
int cudaGetDeviceProperties_v2(rt::DeviceProp12* prop, int device) { GPUBROKER_TRACE_ENTRY(kRuntime); return get_properties(prop, device); }
#else
int cudaGetDeviceProperties(rt::DeviceProp13* prop, int device) { GPUBROKER_TRACE_ENTRY(kRuntime); return get_properties(prop, device); }
#endif

const char* cudaGetErrorString(int error) { return rt::error_string(error); }
const char* cudaGetErrorName(int error) { return rt::error_name(error); }

}  // extern "C"

namespace {

// Answered from what the process knows: its device allocations and its pinned arena blocks.
template <class Attributes>
int pointer_attributes(Attributes* attributes, const void* pointer) {
  if (attributes == nullptr) return record(kErrorInvalidValue);
  std::memset(attributes, 0, sizeof(*attributes));
  if (const auto device = memory().device_of(pointer)) {
    attributes->type = rt::cudaMemoryTypeDevice;
    attributes->device = *device;  // the allocation's, whichever is current
    attributes->devicePointer = const_cast<void*>(pointer);
  } else if (memory().pinned_offset(pointer, 1)) {
    attributes->type = rt::cudaMemoryTypeHost;
    attributes->device = current_device();
    attributes->hostPointer = const_cast<void*>(pointer);
  } else {
    attributes->type = rt::cudaMemoryTypeUnregistered;
    attributes->device = -2;  // what the runtime reports for memory it does not know
    attributes->hostPointer = const_cast<void*>(pointer);
  }
  return kSuccess;
}

}  // namespace

extern "C" {
#if GPUBROKER_CUDART_ABI == 12
int cudaPointerGetAttributes(rt::PointerAttributes12* attributes, const void* pointer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return pointer_attributes(attributes, pointer);
}
#else
int cudaPointerGetAttributes(rt::PointerAttributes13* attributes, const void* pointer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return pointer_attributes(attributes, pointer);
}
#endif
}  // extern "C"
