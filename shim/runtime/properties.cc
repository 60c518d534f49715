// cudaGetDeviceProperties for both ABIs, filled from the broker's device table: no round trip.
// CUDA 12 binaries call cudaGetDeviceProperties_v2 with the 1032-byte layout; CUDA 13 binaries
// call cudaGetDeviceProperties with the 1008-byte one (include/gpubroker/cuda/runtime_abi.h).
#include <cstring>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/cuda/runtime_abi.h"
#include "shim/runtime/runtime_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
using gpubroker::shim::Connection;
namespace rt = gpubroker::cuda::rt;

namespace {

template <class Prop>
void fill_properties(Prop& p, const wire::DeviceRecord& d) {
  auto a = [&](int attribute) { return d.attributes[attribute]; };
  std::memset(&p, 0, sizeof(p));
  std::strncpy(p.name, d.name, sizeof(p.name) - 1);
  std::memcpy(&p.uuid, d.uuid, sizeof(d.uuid));
  p.totalGlobalMem = d.total_bytes;
  p.sharedMemPerBlock = static_cast<std::size_t>(a(8));
  p.regsPerBlock = a(12);
  p.warpSize = a(10);
  p.memPitch = static_cast<std::size_t>(a(11));
  p.maxThreadsPerBlock = a(1);
  for (int i = 0; i < 3; ++i) {
    p.maxThreadsDim[i] = a(2 + i);
    p.maxGridSize[i] = a(5 + i);
  }
  p.totalConstMem = static_cast<std::size_t>(a(9));
  p.major = a(75);
  p.minor = a(76);
  p.textureAlignment = static_cast<std::size_t>(a(14));
  p.texturePitchAlignment = static_cast<std::size_t>(a(51));
  p.multiProcessorCount = a(16);
  p.integrated = a(18);
  p.canMapHostMemory = a(19);
  p.maxTexture1D = a(21);
  p.maxTexture2D[0] = a(22);
  p.maxTexture2D[1] = a(23);
  p.maxTexture3D[0] = a(24);
  p.maxTexture3D[1] = a(25);
  p.maxTexture3D[2] = a(26);
  p.surfaceAlignment = static_cast<std::size_t>(a(30));
  p.concurrentKernels = a(31);
  p.ECCEnabled = a(32);
  p.pciBusID = a(33);
  p.pciDeviceID = a(34);
  p.pciDomainID = a(50);
  p.tccDriver = a(35);
  p.asyncEngineCount = a(40);
  p.unifiedAddressing = a(41);
  p.memoryBusWidth = a(37);
  p.l2CacheSize = a(38);
  p.persistingL2CacheMaxSize = a(108);
  p.maxThreadsPerMultiProcessor = a(39);
  p.streamPrioritiesSupported = a(78);
  p.globalL1CacheSupported = a(79);
  p.localL1CacheSupported = a(80);
  p.sharedMemPerMultiprocessor = static_cast<std::size_t>(a(81));
  p.regsPerMultiprocessor = a(82);
  p.managedMemory = a(83);
  p.isMultiGpuBoard = a(84);
  p.multiGpuBoardGroupID = a(85);
  p.hostNativeAtomicSupported = a(86);
  p.pageableMemoryAccess = a(88);
  p.concurrentManagedAccess = a(89);
  p.computePreemptionSupported = a(90);
  p.canUseHostPointerForRegisteredMem = a(91);
  p.cooperativeLaunch = a(95);
  p.sharedMemPerBlockOptin = static_cast<std::size_t>(a(97));
  p.pageableMemoryAccessUsesHostPageTables = a(100);
  p.directManagedMemAccessFromHost = a(101);
  p.maxBlocksPerMultiProcessor = a(106);
  p.accessPolicyMaxWindowSize = a(109);
  p.reservedSharedMemPerBlock = static_cast<std::size_t>(a(111));
  p.hostRegisterSupported = a(99);
  p.sparseCudaArraySupported = a(112);
  p.hostRegisterReadOnlySupported = a(113);
  p.timelineSemaphoreInteropSupported = a(114);
  p.memoryPoolsSupported = a(115);
  p.gpuDirectRDMASupported = a(116);
  p.gpuDirectRDMAFlushWritesOptions = static_cast<unsigned>(a(117));
  p.gpuDirectRDMAWritesOrdering = a(118);
  p.memoryPoolSupportedHandleTypes = static_cast<unsigned>(a(119));
  p.deferredMappingCudaArraySupported = a(121);
  p.ipcEventSupported = a(125);
  p.clusterLaunch = a(120);
  p.unifiedFunctionPointers = a(129);
  if constexpr (requires { p.clockRate; }) {  // fields CUDA 13 removed
    p.clockRate = a(13);
    p.deviceOverlap = a(15);
    p.kernelExecTimeoutEnabled = a(17);
    p.computeMode = a(20);
    p.memoryClockRate = a(36);
    p.singleToDoublePrecisionPerfRatio = a(87);
    p.cooperativeMultiDeviceLaunch = a(96);
    p.maxTexture1DLinear = a(69);
  }
  if constexpr (requires { p.deviceNumaConfig; }) {  // fields CUDA 13 added
    p.deviceNumaConfig = a(130);
    p.deviceNumaId = a(131);
    p.mpsEnabled = a(133);
    p.hostNumaId = a(134);
    p.gpuPciDeviceID = static_cast<unsigned>(a(139));
    p.gpuPciSubsystemID = static_cast<unsigned>(a(140));
    p.hostNumaMultinodeIpcSupported = a(143);
  }
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
int cudaGetDeviceProperties_v2(rt::DeviceProp12* prop, int device) { return get_properties(prop, device); }
#else
int cudaGetDeviceProperties(rt::DeviceProp13* prop, int device) { return get_properties(prop, device); }
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
  if (memory().is_device(pointer)) {
    attributes->type = rt::cudaMemoryTypeDevice;
    attributes->device = current_device();
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
  return pointer_attributes(attributes, pointer);
}
#else
int cudaPointerGetAttributes(rt::PointerAttributes13* attributes, const void* pointer) {
  return pointer_attributes(attributes, pointer);
}
#endif
}  // extern "C"
