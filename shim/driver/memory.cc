// Memory of the driver API: device allocations, pinned host memory, copies, memsets and pointer
// attributes. The same operations and the same memory map as the runtime shim's
// (shim/client/operations.h), so memory from either API is the other's too.
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <mutex>

#include "shim/abi/unsupported.h"
#include "shim/driver/driver_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::drv;
using cuda::CUdeviceptr;
using cuda::CUstream;
using gpubroker::shim::Connection;
namespace ops = gpubroker::shim::ops;

namespace {

void* host(CUdeviceptr pointer) { return reinterpret_cast<void*>(pointer); }

// A copy on the current context's device; `direction` as in ops::copy.
CUresult copy(void* destination, const void* source, std::size_t bytes, ops::Direction direction, CUstream stream,
              bool asynchronous) {
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  return result(ops::copy(*c, destination, source, bytes, direction, stream_id(stream), asynchronous));
}

// cuMemsetD8/16/32: `count` elements of `element_bytes` (the broker checks alignment and range).
CUresult memset(CUdeviceptr pointer, std::uint32_t value, std::size_t count, std::uint32_t element_bytes, CUstream stream) {
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  if (pointer % element_bytes != 0) return result(kInvalidValue);
  return result(ops::memset(*c, pointer, value, count, element_bytes, stream_id(stream)));
}

}  // namespace

extern "C" {

// ---- device memory --------------------------------------------------------------------------

CUresult cuMemAlloc_v2(CUdeviceptr* pointer, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  if (pointer == nullptr || bytes == 0) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t address = 0;
  const CUresult r = ops::allocate(*c, bytes, address);
  if (r == kSuccess) *pointer = address;
  return result(r);
}

CUresult cuMemFree_v2(CUdeviceptr pointer) {
  GPUBROKER_DRIVER_ENTRY();
  if (pointer == 0) return result(kSuccess);
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  return result(ops::free(*c, pointer));
}

// Rows padded to 512 bytes, as the runtime shim's cudaMallocPitch (an H100's texture alignment).
CUresult cuMemAllocPitch_v2(CUdeviceptr* pointer, std::size_t* pitch, std::size_t width, std::size_t height,
                            unsigned element_bytes) {
  GPUBROKER_DRIVER_ENTRY();
  if (pointer == nullptr || pitch == nullptr || width == 0 || height == 0) return result(kInvalidValue);
  if (element_bytes != 4 && element_bytes != 8 && element_bytes != 16) return result(kInvalidValue);
  constexpr std::size_t kPitchAlignment = 512;
  std::size_t bytes = 0;
  if (width > SIZE_MAX - kPitchAlignment) return result(kOutOfMemory);
  const std::size_t padded = (width + kPitchAlignment - 1) / kPitchAlignment * kPitchAlignment;
  if (__builtin_mul_overflow(padded, height, &bytes)) return result(kOutOfMemory);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t address = 0;
  const CUresult r = ops::allocate(*c, bytes, address);
  if (r != kSuccess) return result(r);
  *pointer = address;
  *pitch = padded;
  return result(kSuccess);
}

CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, std::size_t* bytes, CUdeviceptr pointer) {
  GPUBROKER_DRIVER_ENTRY();
  const auto range = shim::memory().device_range(pointer);
  if (!range) return result(kNotFound);
  if (base != nullptr) *base = range->first;
  if (bytes != nullptr) *bytes = range->second;
  return result(kSuccess);
}

// Stream-ordered allocation, as the runtime shim serves it: from the session's memory at once;
// the free waits for the stream first.
CUresult cuMemAllocAsync(CUdeviceptr* pointer, std::size_t bytes, CUstream /*stream*/) { return cuMemAlloc_v2(pointer, bytes); }

CUresult cuMemFreeAsync(CUdeviceptr pointer, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  if (const CUresult r = ops::request<wire::RequestKind::kStreamSynchronize>(*c, wire::HandleRequest{stream_id(stream)});
      r != kSuccess) {
    return result(r);
  }
  return result(ops::free(*c, pointer));
}

// ---- pinned host memory ---------------------------------------------------------------------

CUresult cuMemAllocHost_v2(void** pointer, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  if (pointer == nullptr) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  return result(ops::allocate_pinned(*c, bytes, *pointer));
}

// Every arena block is portable and mapped; write-combined is a hint.
CUresult cuMemHostAlloc(void** pointer, std::size_t bytes, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if ((flags & ~0x7u) != 0) return result(kInvalidValue);  // PORTABLE | DEVICEMAP | WRITECOMBINED
  return cuMemAllocHost_v2(pointer, bytes);
}

CUresult cuMemFreeHost(void* pointer) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  return result(ops::free_pinned(*c, pointer));
}

// As the runtime shim's cudaHostRegister: copies from any host memory work (pageable memory moves
// through staging), so registration is accepted and changes nothing; mapping host memory into the
// device's address space is not served.
CUresult cuMemHostRegister_v2(void* pointer, std::size_t bytes, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if (pointer == nullptr || bytes == 0 || (flags & ~0xfu) != 0) return result(kInvalidValue);
  return result(Connection::get() == nullptr ? kNotInitialized : kSuccess);
}

CUresult cuMemHostUnregister(void* pointer) {
  GPUBROKER_DRIVER_ENTRY();
  return result(pointer == nullptr ? kInvalidValue : kSuccess);
}

CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* device_pointer, void* /*host_pointer*/, unsigned /*flags*/) {
  GPUBROKER_DRIVER_ENTRY();
  if (device_pointer == nullptr) return result(kInvalidValue);
  log_unsupported("cuMemHostGetDevicePointer (mapped host memory)");
  return result(kNotSupported);
}

// ---- copies ---------------------------------------------------------------------------------

CUresult cuMemcpyHtoD_v2(CUdeviceptr destination, const void* source, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), source, bytes, ops::Direction::kHostToDevice, nullptr, false);
}

CUresult cuMemcpyDtoH_v2(void* destination, CUdeviceptr source, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(destination, host(source), bytes, ops::Direction::kDeviceToHost, nullptr, false);
}

// Device to device is asynchronous to the host even in its synchronous form; CUDA's cuMemcpyDtoD
// returns once the copy is ordered, which a later synchronizing call waits for.
CUresult cuMemcpyDtoD_v2(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), host(source), bytes, ops::Direction::kDeviceToDevice, nullptr, false);
}

// Unified addressing: the direction from the memory map.
CUresult cuMemcpy(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), host(source), bytes, ops::Direction::kDefault, nullptr, false);
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination, const void* source, std::size_t bytes, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), source, bytes, ops::Direction::kHostToDevice, stream, true);
}

CUresult cuMemcpyDtoHAsync_v2(void* destination, CUdeviceptr source, std::size_t bytes, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(destination, host(source), bytes, ops::Direction::kDeviceToHost, stream, true);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), host(source), bytes, ops::Direction::kDeviceToDevice, stream, true);
}

CUresult cuMemcpyAsync(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return copy(host(destination), host(source), bytes, ops::Direction::kDefault, stream, true);
}

// A 2D copy, row by row, between host and device memory of either side (CUDA arrays are not
// served). Addresses are integers: a row past the address space is refused, not wrapped.
static CUresult copy_2d(const cuda::CUDA_MEMCPY2D* p, CUstream stream, bool asynchronous) {
  constexpr int kHost = 1, kDevice = 2, kArray = 3, kUnified = 4;  // CUmemorytype
  if (p == nullptr) return result(kInvalidValue);
  if (p->srcMemoryType == kArray || p->dstMemoryType == kArray) {
    log_unsupported("cuMemcpy2D with a CUDA array");
    return result(kNotSupported);
  }
  auto base = [&](int type, const void* host_pointer, CUdeviceptr device_pointer, std::size_t x, std::size_t y,
                  std::size_t pitch, std::uint64_t& address) {
    const std::uint64_t start = type == kHost ? reinterpret_cast<std::uint64_t>(host_pointer) : device_pointer;
    std::uint64_t offset = 0;
    if (type != kHost && type != kDevice && type != kUnified) return false;
    return !__builtin_mul_overflow(y, pitch, &offset) && !__builtin_add_overflow(offset, x, &offset) &&
           !__builtin_add_overflow(start, offset, &address);
  };
  std::uint64_t src = 0, dst = 0;
  if (!base(p->srcMemoryType, p->srcHost, p->srcDevice, p->srcXInBytes, p->srcY, p->srcPitch, src) ||
      !base(p->dstMemoryType, p->dstHost, p->dstDevice, p->dstXInBytes, p->dstY, p->dstPitch, dst)) {
    return result(kInvalidValue);
  }
  if (p->Height > 1 && (p->WidthInBytes > p->srcPitch || p->WidthInBytes > p->dstPitch)) return result(kInvalidValue);
  std::uint64_t span = 0, end = 0;  // from a side's first byte to its last row's end
  if (p->Height != 0 && (__builtin_mul_overflow(p->Height - 1, std::max(p->srcPitch, p->dstPitch), &span) ||
                         __builtin_add_overflow(span, p->WidthInBytes, &span) || __builtin_add_overflow(src, span, &end) ||
                         __builtin_add_overflow(dst, span, &end))) {
    return result(kInvalidValue);
  }
  const bool from_device = p->srcMemoryType != kHost, to_device = p->dstMemoryType != kHost;
  const ops::Direction direction = p->srcMemoryType == kUnified || p->dstMemoryType == kUnified ? ops::Direction::kDefault
                                   : from_device ? (to_device ? ops::Direction::kDeviceToDevice : ops::Direction::kDeviceToHost)
                                                 : (to_device ? ops::Direction::kHostToDevice : ops::Direction::kHostToHost);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  const std::uint64_t id = stream_id(stream);
  for (std::size_t row = 0; row < p->Height; ++row) {
    const CUresult r = ops::copy(*c, host(dst + row * p->dstPitch), host(src + row * p->srcPitch), p->WidthInBytes, direction,
                                 id, asynchronous);
    if (r != kSuccess) return result(r);
  }
  return result(kSuccess);
}

CUresult cuMemcpy2D_v2(const cuda::CUDA_MEMCPY2D* copy) {
  GPUBROKER_DRIVER_ENTRY();
  if (const CUresult r = copy_2d(copy, nullptr, false); r != kSuccess) return r;
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  return result(ops::request<wire::RequestKind::kStreamSynchronize>(*c, wire::HandleRequest{0}));
}

CUresult cuMemcpy2DUnaligned_v2(const cuda::CUDA_MEMCPY2D* copy) {
  GPUBROKER_DRIVER_ENTRY();
  return cuMemcpy2D_v2(copy);
}

CUresult cuMemcpy2DAsync_v2(const cuda::CUDA_MEMCPY2D* copy, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return copy_2d(copy, stream, true);
}

// ---- memsets --------------------------------------------------------------------------------

CUresult cuMemsetD8_v2(CUdeviceptr pointer, unsigned char value, std::size_t count) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 1, nullptr);
}

CUresult cuMemsetD16_v2(CUdeviceptr pointer, unsigned short value, std::size_t count) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 2, nullptr);
}

CUresult cuMemsetD32_v2(CUdeviceptr pointer, unsigned value, std::size_t count) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 4, nullptr);
}

CUresult cuMemsetD8Async(CUdeviceptr pointer, unsigned char value, std::size_t count, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 1, stream);
}

CUresult cuMemsetD16Async(CUdeviceptr pointer, unsigned short value, std::size_t count, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 2, stream);
}

CUresult cuMemsetD32Async(CUdeviceptr pointer, unsigned value, std::size_t count, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return memset(pointer, value, count, 4, stream);
}

// ---- pointer attributes ---------------------------------------------------------------------

// CUpointer_attribute values answered from the memory map.
constexpr int kPointerContext = 1, kPointerMemoryType = 2, kPointerDevicePointer = 3, kPointerHostPointer = 4,
              kPointerIsManaged = 8, kPointerDeviceOrdinal = 9, kPointerRangeStart = 11, kPointerRangeSize = 12,
              kPointerMapped = 13;
constexpr unsigned kMemoryTypeHost = 1, kMemoryTypeDevice = 2;  // CUmemorytype

CUresult cuPointerGetAttribute(void* data, int attribute, CUdeviceptr pointer) {
  GPUBROKER_DRIVER_ENTRY();
  if (data == nullptr) return result(kInvalidValue);
  const auto range = shim::memory().device_range(pointer);
  const bool pinned = shim::memory().pinned_offset(host(pointer), 1).has_value();
  if (!range && !pinned) return result(kInvalidValue);  // memory CUDA does not know
  switch (attribute) {
    case kPointerContext: {
      cuda::CUcontext context = nullptr;
      if (range) {
        const int device = *shim::memory().device_of(host(pointer));
        if (cuDevicePrimaryCtxRetain(&context, device) == kSuccess) (void)cuDevicePrimaryCtxRelease_v2(device);
      }
      std::memcpy(data, &context, sizeof context);
      return result(kSuccess);
    }
    case kPointerMemoryType: {
      const unsigned type = range ? kMemoryTypeDevice : kMemoryTypeHost;
      std::memcpy(data, &type, sizeof type);
      return result(kSuccess);
    }
    case kPointerDevicePointer:
    case kPointerHostPointer:
      if (range && attribute == kPointerHostPointer) return result(kInvalidValue);  // device memory is not mapped
      if (pinned && attribute == kPointerDevicePointer) return result(kNotSupported);  // mapped host memory
      std::memcpy(data, &pointer, sizeof pointer);
      return result(kSuccess);
    case kPointerIsManaged:
    case kPointerMapped: {
      const int value = attribute == kPointerMapped ? 1 : 0;
      std::memcpy(data, &value, sizeof value);
      return result(kSuccess);
    }
    case kPointerDeviceOrdinal: {
      const int device = range ? *shim::memory().device_of(host(pointer)) : -1;
      if (device < 0) return result(kInvalidValue);
      std::memcpy(data, &device, sizeof device);
      return result(kSuccess);
    }
    case kPointerRangeStart:
    case kPointerRangeSize: {
      if (!range) return result(kInvalidValue);
      const CUdeviceptr value = attribute == kPointerRangeStart ? range->first : range->second;
      std::memcpy(data, &value, sizeof value);
      return result(kSuccess);
    }
    default:
      log_unsupported("cuPointerGetAttribute of an attribute other than context, memory type, "
                                     "device/host pointer, managed, mapped, device ordinal or range");
      return result(kNotSupported);
  }
}

CUresult cuPointerGetAttributes(unsigned count, int* attributes, void** data, CUdeviceptr pointer) {
  GPUBROKER_DRIVER_ENTRY();
  if (count != 0 && (attributes == nullptr || data == nullptr)) return result(kInvalidValue);
  for (unsigned i = 0; i < count; ++i) {
    if (const CUresult r = cuPointerGetAttribute(data[i], attributes[i], pointer); r != kSuccess) return result(r);
  }
  return result(kSuccess);
}

}  // extern "C"
