// The CUDA runtime entry points the shim serves: devices, memory, copies, streams, events,
// errors. Every function here is `extern "C"` and never lets an exception out. What the shim
// does not serve yet is generated (shim/abi/) and returns cudaErrorNotSupported.
#include <cstdio>
#include <cstring>
#include <iterator>
#include <mutex>
#include <new>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/abi/unsupported.h"
#include "shim/runtime/runtime_state.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
using gpubroker::shim::Connection;
namespace cudart = gpubroker::cuda::rt;

namespace {

using Stream = void*;  // cudaStream_t
using Event = void*;   // cudaEvent_t

// The cache configuration this process prefers, per device (cudaDeviceSetCacheConfig).
int g_cache_config[wire::kMaxDevices] = {};

// The address `bytes` past `p`. An integer sum: a client may name a range far outside any object
// (the broker refuses it), where pointer arithmetic would be undefined.
template <typename T>
T* advanced(T* p, std::size_t bytes) {
  return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(p) + bytes);
}

// Whether `height` rows of `width` bytes, `pitch` bytes apart from `p` on, lie within the address
// space: a span that overflows is an invalid value, not a wrapped address.
bool rows_fit(const void* p, std::size_t pitch, std::size_t width, std::size_t height) {
  if (height == 0) return true;
  std::size_t span = 0, end = 0;
  return !__builtin_mul_overflow(height - 1, pitch, &span) && !__builtin_add_overflow(span, width, &span) &&
         !__builtin_add_overflow(reinterpret_cast<std::uintptr_t>(p), span, &end);
}

std::uint64_t stream_id(Stream stream) { return shim::submission_stream_id(stream); }

// The visible device `device` as the broker numbers it, or nullopt.
std::optional<std::uint32_t> broker_ordinal(int device) {
  Connection* c = connection();
  if (c == nullptr || device < 0 || static_cast<std::size_t>(device) >= c->visible().size()) return std::nullopt;
  return c->visible()[static_cast<std::size_t>(device)];
}

Error check_device(int device) {
  if (connection() == nullptr) return record(kErrorNoDevice);
  return broker_ordinal(device) ? kSuccess : record(kErrorInvalidDevice);
}

// One copy (shim/client/operations.h says how each kind of memory moves).
Error copy(void* destination, const void* source, std::size_t bytes, int kind, Stream stream, bool asynchronous) {
  if (kind < kHostToHost || kind > kDefault) return record(kErrorInvalidMemcpyDirection);
  if (bytes == 0) return kSuccess;
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::ops::copy(*c, destination, source, bytes, static_cast<shim::ops::Direction>(kind), stream_id(stream),
                                asynchronous));
}

Error create_stream(Stream* stream, unsigned flags, int priority) {
  if (stream == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  std::uint64_t id = 0;
  const Error e = record(shim::ops::create_stream(*c, flags, priority, id));
  if (e == kSuccess) *stream = reinterpret_cast<Stream>(id);
  return e;
}

Error create_event(Event* event, unsigned flags) {
  if (event == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  std::uint64_t id = 0;
  const Error e = record(shim::ops::create_event(*c, flags, id));
  if (e == kSuccess) *event = reinterpret_cast<Event>(id);
  return e;
}

Error allocate_pinned(void** pointer, std::size_t bytes) {
  if (pointer == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::ops::allocate_pinned(*c, bytes, *pointer));
}

}  // namespace

// cudaChannelFormatDesc, returned by value (20 bytes: in memory, through a hidden pointer).
struct cudaChannelFormatDescForShim {
  int x, y, z, w;
  int f;
};

extern "C" {

// ---- devices --------------------------------------------------------------------------------

int cudaGetDeviceCount(int* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (count == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  *count = c == nullptr ? 0 : static_cast<int>(c->visible().size());
  return *count == 0 ? record(kErrorNoDevice) : kSuccess;
}

int cudaGetDevice(int* device) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (device == nullptr) return record(kErrorInvalidValue);
  *device = current_device();
  return kSuccess;
}

// Per thread, as in CUDA; every later request of the thread names the device (runtime_state.h).
int cudaSetDevice(int device) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (const Error e = check_device(device); e != kSuccess) return e;
  set_current_device(device);
  return kSuccess;
}

int cudaDeviceGetAttribute(int* value, int attribute, int device) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (value == nullptr) return record(kErrorInvalidValue);
  if (const Error e = check_device(device); e != kSuccess) return e;
  if (attribute <= 0 || attribute >= static_cast<int>(wire::kDeviceAttributeCount)) return record(kErrorInvalidValue);
  // cudaDeviceAttr values are the driver's CUdevice_attribute values.
  *value = connection()->device(static_cast<std::uint32_t>(device)).attributes[attribute];
  return kSuccess;
}

int cudaDeviceGetPCIBusId(char* bus_id, int length, int device) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (bus_id == nullptr || length <= 0) return record(kErrorInvalidValue);
  if (const Error e = check_device(device); e != kSuccess) return e;
  const char* id = connection()->device(static_cast<std::uint32_t>(device)).pci_bus_id;
  std::strncpy(bus_id, id, static_cast<std::size_t>(length));
  bus_id[length - 1] = '\0';
  return kSuccess;
}

int cudaDriverGetVersion(int* version) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (version == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  *version = c == nullptr ? 0 : c->device_table().driver_version;
  return kSuccess;
}

int cudaRuntimeGetVersion(int* version) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (version == nullptr) return record(kErrorInvalidValue);
  *version = GPUBROKER_CUDART_ABI == 12 ? 12090 : 13000;
  return kSuccess;
}

int cudaDeviceSynchronize() {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  hold_for_all_host_funcs();
  return call<wire::RequestKind::kContextSynchronize>({});
}

int cudaMemGetInfo(std::size_t* free, std::size_t* total) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (free == nullptr || total == nullptr) return record(kErrorInvalidValue);
  const auto ordinal = broker_ordinal(current_device());
  if (!ordinal) return record(connection() == nullptr ? kErrorNoDevice : kErrorInvalidDevice);
  shim::ReplyOf<wire::RequestKind::kMemGetInfo> reply{};
  if (const Error e = call<wire::RequestKind::kMemGetInfo>(wire::DeviceRequest{*ordinal, 0}, &reply); e != kSuccess) {
    return e;
  }
  const auto info = reply;
  *free = info.free;
  *total = info.total;
  return kSuccess;
}

// Frees what the process holds on the current device after its work (shim/client/operations.h
// says what stays); the sticky error, if the process has one, stays too: the broker's context is
// shared and cannot be reset for one runner.
int cudaDeviceReset() {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::ops::reset_device(*c));
}

int cudaGetLastError() { GPUBROKER_TRACE_ENTRY(kRuntime); return last_error(true); }
int cudaPeekAtLastError() { GPUBROKER_TRACE_ENTRY(kRuntime); return last_error(false); }

// ---- memory ---------------------------------------------------------------------------------

int cudaMalloc(void** pointer, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (pointer == nullptr) return record(kErrorInvalidValue);
  if (!broker_ordinal(current_device())) return record(connection() == nullptr ? kErrorNoDevice : kErrorInvalidDevice);
  std::uint64_t address = 0;
  // CUDA_ERROR_OUT_OF_MEMORY is cudaErrorMemoryAllocation (2).
  if (const Error e = record(shim::ops::allocate(*connection(), bytes, address)); e != kSuccess) return e;
  *pointer = reinterpret_cast<void*>(address);
  return kSuccess;
}

int cudaFree(void* pointer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (pointer == nullptr) return kSuccess;
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::ops::free(*c, reinterpret_cast<std::uint64_t>(pointer)));
}

int cudaMallocHost(void** pointer, std::size_t bytes) { GPUBROKER_TRACE_ENTRY(kRuntime); return allocate_pinned(pointer, bytes); }

int cudaHostAlloc(void** pointer, std::size_t bytes, unsigned /*flags: every arena block is portable and mapped*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return allocate_pinned(pointer, bytes);
}

// Like CUDA's, the free first waits for the devices' work (and reports an earlier asynchronous
// error): a copy still in flight into the block, on whichever device, must not land in memory the
// arena's heap has already handed out again, or in the heap's own bookkeeping.
int cudaFreeHost(void* pointer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (pointer == nullptr) return kSuccess;
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::ops::free_pinned(*c, pointer));
}

int cudaMemcpy(void* destination, const void* source, std::size_t bytes, int kind) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return copy(destination, source, bytes, kind, nullptr, false);
}

int cudaMemcpyAsync(void* destination, const void* source, std::size_t bytes, int kind, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return copy(destination, source, bytes, kind, stream, true);
}

int cudaMemset(void* pointer, int value, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (bytes == 0) return kSuccess;
  const wire::MemsetRequest r{reinterpret_cast<std::uint64_t>(pointer), bytes, 0, static_cast<std::uint32_t>(value & 0xff), 0};
  return post<wire::RequestKind::kMemset>(r);
}

int cudaMemsetAsync(void* pointer, int value, std::size_t bytes, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (bytes == 0) return kSuccess;
  const wire::MemsetRequest r{reinterpret_cast<std::uint64_t>(pointer), bytes, stream_id(stream),
                              static_cast<std::uint32_t>(value & 0xff), 0};
  return post<wire::RequestKind::kMemset>(r);
}

// ---- host functions (shim/client/host_funcs.cc runs them) ------------------------------------

int cudaLaunchHostFunc(Stream stream, shim::HostFunction function, void* data) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (function == nullptr) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::launch_host_func(*c, reinterpret_cast<std::uint64_t>(stream), function, data));
}

// flags must be 0 (CUDA reserves them); the callback is told cudaSuccess, since a stream with a
// failed operation reports the failure at the next synchronizing call instead.
int cudaStreamAddCallback(Stream stream, shim::StreamCallback callback, void* data, unsigned flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (callback == nullptr || flags != 0) return record(kErrorInvalidValue);
  Connection* c = connection();
  if (c == nullptr) return record(kErrorNoDevice);
  return record(shim::add_stream_callback(*c, reinterpret_cast<std::uint64_t>(stream), callback, data));
}

// ---- streams and events ---------------------------------------------------------------------

int cudaStreamCreate(Stream* stream) { GPUBROKER_TRACE_ENTRY(kRuntime); return create_stream(stream, 0, 0); }
int cudaStreamCreateWithFlags(Stream* stream, unsigned flags) { GPUBROKER_TRACE_ENTRY(kRuntime); return create_stream(stream, flags, 0); }
int cudaStreamCreateWithPriority(Stream* stream, unsigned flags, int priority) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return create_stream(stream, flags, priority);
}

int cudaStreamDestroy(Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kStreamDestroy>(wire::HandleRequest{stream_id(stream)});
}

int cudaStreamSynchronize(Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kStreamSynchronize>(wire::HandleRequest{stream_id(stream)});
}

int cudaStreamQuery(Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (host_funcs_pending(reinterpret_cast<std::uint64_t>(stream))) return kErrorNotReady;
  return call<wire::RequestKind::kStreamQuery>(wire::HandleRequest{stream_id(stream)});
}

// The flags the stream was created with, and its priority as the device clamped it.
int cudaStreamGetFlags(Stream stream, unsigned* flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (flags == nullptr) return record(kErrorInvalidValue);
  std::uint32_t value = 0;
  const Error e = call<wire::RequestKind::kStreamGetFlags>(wire::HandleRequest{reinterpret_cast<std::uint64_t>(stream)}, &value);
  if (e == kSuccess) *flags = value;
  return e;
}

int cudaStreamGetPriority(Stream stream, int* priority) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (priority == nullptr) return record(kErrorInvalidValue);
  std::int32_t value = 0;
  const Error e = call<wire::RequestKind::kStreamGetPriority>(wire::HandleRequest{reinterpret_cast<std::uint64_t>(stream)}, &value);
  if (e == kSuccess) *priority = value;
  return e;
}

int cudaStreamWaitEvent(Stream stream, Event event, unsigned /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return post<wire::RequestKind::kStreamWaitEvent>(wire::EventStreamRequest{reinterpret_cast<std::uint64_t>(event), stream_id(stream)});
}

int cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (least != nullptr) *least = 0;
  if (greatest != nullptr) *greatest = -5;  // an H100's range
  return kSuccess;
}

int cudaEventCreate(Event* event) { GPUBROKER_TRACE_ENTRY(kRuntime); return create_event(event, 0); }
int cudaEventCreateWithFlags(Event* event, unsigned flags) { GPUBROKER_TRACE_ENTRY(kRuntime); return create_event(event, flags); }

int cudaEventRecord(Event event, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return post<wire::RequestKind::kEventRecord>(wire::EventStreamRequest{reinterpret_cast<std::uint64_t>(event), stream_id(stream)});
}

// cudaEventRecordExternal (1) makes a captured record an event record node of the graph.
int cudaEventRecordWithFlags(Event event, Stream stream, unsigned flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return post<wire::RequestKind::kEventRecordWithFlags>(
      wire::EventRecordRequest{reinterpret_cast<std::uint64_t>(event), stream_id(stream), flags, 0});
}

int cudaEventSynchronize(Event event) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kEventSynchronize>(wire::HandleRequest{reinterpret_cast<std::uint64_t>(event)});
}

int cudaEventQuery(Event event) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kEventQuery>(wire::HandleRequest{reinterpret_cast<std::uint64_t>(event)});
}

int cudaEventElapsedTime(float* milliseconds, Event start, Event end) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (milliseconds == nullptr) return record(kErrorInvalidValue);
  shim::ReplyOf<wire::RequestKind::kEventElapsedTime> reply{};
  const Error e = call<wire::RequestKind::kEventElapsedTime>(wire::EventPairRequest{reinterpret_cast<std::uint64_t>(start), reinterpret_cast<std::uint64_t>(end)}, &reply);
  if (e == kSuccess) *milliseconds = reply;
  return e;
}

int cudaEventDestroy(Event event) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kEventDestroy>(wire::HandleRequest{reinterpret_cast<std::uint64_t>(event)});
}

// ---- more memory ----------------------------------------------------------------------------

int cudaMallocPitch(void** pointer, std::size_t* pitch, std::size_t width, std::size_t height) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (pitch == nullptr) return record(kErrorInvalidValue);
  // The real driver pads rows to its texture pitch alignment; 512 bytes on an H100.
  constexpr std::size_t kPitchAlignment = 512;
  std::size_t bytes = 0;
  if (width > SIZE_MAX - kPitchAlignment) return record(kErrorMemoryAllocation);
  *pitch = (width + kPitchAlignment - 1) / kPitchAlignment * kPitchAlignment;
  if (__builtin_mul_overflow(*pitch, height, &bytes)) return record(kErrorMemoryAllocation);
  return cudaMalloc(pointer, bytes);
}

int cudaMemcpy2DAsync(void* destination, std::size_t destination_pitch, const void* source, std::size_t source_pitch,
                      std::size_t width, std::size_t height, int kind, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (width > destination_pitch || width > source_pitch || !rows_fit(destination, destination_pitch, width, height) ||
      !rows_fit(source, source_pitch, width, height)) {
    return record(kErrorInvalidValue);
  }
  if (destination_pitch == width && source_pitch == width) {
    return copy(destination, source, width * height, kind, stream, true);
  }
  // Row by row: correct for every kind of memory; a 2D request kind would save round trips.
  for (std::size_t row = 0; row < height; ++row) {
    const Error e = copy(advanced(destination, row * destination_pitch), advanced(source, row * source_pitch), width, kind,
                         stream, true);
    if (e != kSuccess) return e;
  }
  return kSuccess;
}

int cudaMemcpy2D(void* destination, std::size_t destination_pitch, const void* source, std::size_t source_pitch,
                 std::size_t width, std::size_t height, int kind) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = cudaMemcpy2DAsync(destination, destination_pitch, source, source_pitch, width, height, kind, nullptr);
  return e != kSuccess ? e : cudaStreamSynchronize(nullptr);
}

int cudaMemset2DAsync(void* pointer, std::size_t pitch, int value, std::size_t width, std::size_t height, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (width > pitch || !rows_fit(pointer, pitch, width, height)) return record(kErrorInvalidValue);
  if (pitch == width) return cudaMemsetAsync(pointer, value, width * height, stream);
  for (std::size_t row = 0; row < height; ++row) {
    if (const Error e = cudaMemsetAsync(advanced(pointer, row * pitch), value, width, stream); e != kSuccess) {
      return e;
    }
  }
  return kSuccess;
}

int cudaMemset2D(void* pointer, std::size_t pitch, int value, std::size_t width, std::size_t height) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return cudaMemset2DAsync(pointer, pitch, value, width, height, nullptr);
}

// 3D copies and sets of linear (pitched) memory, slice by slice as 2D operations; CUDA arrays
// (textures) are not served.
namespace {

void* slice_base(const cudart::cudaPitchedPtr& p, const cudart::cudaPos& pos, std::size_t z) {
  return advanced(p.ptr, ((pos.z + z) * p.ysize + pos.y) * p.pitch + pos.x);
}

bool fits(const cudart::cudaPitchedPtr& p, const cudart::cudaPos& pos, const cudart::cudaExtent& e) {
  return p.ptr != nullptr && pos.x <= p.pitch && e.width <= p.pitch - pos.x && (e.depth <= 1 || pos.y + e.height <= p.ysize);
}

}  // namespace

int cudaMemcpy3DAsync(const cudart::cudaMemcpy3DParms* p, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (p == nullptr) return record(kErrorInvalidValue);
  if (p->srcArray != nullptr || p->dstArray != nullptr) {
    gpubroker_log_unsupported_once("cudaMemcpy3D with a CUDA array");
    return record(kErrorNotSupported);
  }
  const cudart::cudaExtent& e = p->extent;
  if (e.width == 0 || e.height == 0 || e.depth == 0) return kSuccess;
  if (!fits(p->srcPtr, p->srcPos, e) || !fits(p->dstPtr, p->dstPos, e)) return record(kErrorInvalidValue);
  for (std::size_t z = 0; z < e.depth; ++z) {
    const Error error = cudaMemcpy2DAsync(slice_base(p->dstPtr, p->dstPos, z), p->dstPtr.pitch,
                                          slice_base(p->srcPtr, p->srcPos, z), p->srcPtr.pitch, e.width, e.height,
                                          static_cast<int>(p->kind), stream);
    if (error != kSuccess) return error;
  }
  return kSuccess;
}

int cudaMemcpy3D(const cudart::cudaMemcpy3DParms* p) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = cudaMemcpy3DAsync(p, nullptr);
  return e != kSuccess ? e : cudaStreamSynchronize(nullptr);
}

int cudaMalloc3D(cudart::cudaPitchedPtr* p, cudart::cudaExtent e) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (p == nullptr) return record(kErrorInvalidValue);
  std::size_t pitch = 0;
  void* pointer = nullptr;
  std::size_t rows = 0;
  if (__builtin_mul_overflow(e.height, e.depth, &rows)) return record(kErrorMemoryAllocation);
  if (const Error error = cudaMallocPitch(&pointer, &pitch, e.width, rows); error != kSuccess) return error;
  *p = cudart::cudaPitchedPtr{pointer, pitch, e.width, e.height};
  return kSuccess;
}

int cudaMemset3DAsync(cudart::cudaPitchedPtr p, int value, cudart::cudaExtent e, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (e.width == 0 || e.height == 0 || e.depth == 0) return kSuccess;
  if (!fits(p, cudart::cudaPos{}, e)) return record(kErrorInvalidValue);
  for (std::size_t z = 0; z < e.depth; ++z) {
    if (const Error error = cudaMemset2DAsync(slice_base(p, cudart::cudaPos{}, z), p.pitch, value, e.width, e.height, stream);
        error != kSuccess) {
      return error;
    }
  }
  return kSuccess;
}

int cudaMemset3D(cudart::cudaPitchedPtr p, int value, cudart::cudaExtent e) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return cudaMemset3DAsync(p, value, e, nullptr);
}


// Stream-ordered allocation, served by the device allocator: the allocation is usable at once
// (which satisfies stream order), and the free waits for the stream's earlier work.
int cudaMallocAsync(void** pointer, std::size_t bytes, Stream /*stream*/) { GPUBROKER_TRACE_ENTRY(kRuntime); return cudaMalloc(pointer, bytes); }

int cudaFreeAsync(void* pointer, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (const Error e = cudaStreamSynchronize(stream); e != kSuccess) return e;
  return cudaFree(pointer);
}

int cudaMallocManaged(void** /*pointer*/, std::size_t /*bytes*/, unsigned /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  // Managed memory would need the broker's device to fault on client pages; not offered.
  static std::once_flag logged;
  std::call_once(logged, [] {
    std::fputs("gpubroker: cudaMallocManaged is not supported through the broker (use cudaMalloc)\n", stderr);
  });
  return record(kErrorNotSupported);
}

// Registered pageable memory stays in the client's address space, where the broker cannot reach
// it: copies from it work (through staging), but a device pointer for it does not exist.
int cudaHostRegister(void* pointer, std::size_t bytes, unsigned /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (pointer == nullptr || bytes == 0) return record(kErrorInvalidValue);
  return connection() == nullptr ? record(kErrorNoDevice) : kSuccess;
}

int cudaHostUnregister(void* pointer) { GPUBROKER_TRACE_ENTRY(kRuntime); return pointer == nullptr ? record(kErrorInvalidValue) : kSuccess; }

int cudaHostGetDevicePointer(void** /*device_pointer*/, void* /*host_pointer*/, unsigned /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  static std::once_flag logged;
  std::call_once(logged, [] {
    std::fputs("gpubroker: cudaHostGetDevicePointer (mapped host memory) is not supported through the broker\n", stderr);
  });
  return record(kErrorNotSupported);
}

int cudaSetDeviceFlags(unsigned /*flags*/) { GPUBROKER_TRACE_ENTRY(kRuntime); return connection() == nullptr ? record(kErrorNoDevice) : kSuccess; }

int cudaGetDeviceFlags(unsigned* flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (flags == nullptr) return record(kErrorInvalidValue);
  *flags = 0x08;  // cudaDeviceMapHost: the runtime's default on a 64-bit host
  return kSuccess;
}

cudaChannelFormatDescForShim cudaCreateChannelDesc(int x, int y, int z, int w, int kind) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return cudaChannelFormatDescForShim{x, y, z, w, kind};
}

// Every device's memory is in the broker's one address space (unified addressing), so a peer copy
// is a device-to-device copy once both devices are checked; the broker sees the two ends on two
// devices and makes it a peer copy (cuMemcpyPeerAsync), which needs no peer access.
int cudaMemcpyPeerAsync(void* destination, int destination_device, const void* source, int source_device,
                        std::size_t bytes, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (const Error e = check_device(destination_device); e != kSuccess) return e;
  if (const Error e = check_device(source_device); e != kSuccess) return e;
  return copy(destination, source, bytes, kDeviceToDevice, stream, true);
}

int cudaMemcpyPeer(void* destination, int destination_device, const void* source, int source_device, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = cudaMemcpyPeerAsync(destination, destination_device, source, source_device, bytes, nullptr);
  return e != kSuccess ? e : cudaStreamSynchronize(nullptr);
}

// The context's limits are every session's: a session may raise one (the broker keeps the larger
// value, which is what the session asked for at least) but never lower it; the L2 cache limits it
// may not change. cudaDeviceGetLimit reads the context's value.
int cudaDeviceGetLimit(std::size_t* value, int limit) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (value == nullptr) return record(kErrorInvalidValue);
  shim::ReplyOf<wire::RequestKind::kDeviceLimit> reply{};
  const Error e = call<wire::RequestKind::kDeviceLimit>(wire::LimitRequest{limit, 0, 0}, &reply);
  if (e == kSuccess) *value = reply;
  return e;
}

// Forwarded to the broker, which owns the device's context: a limit is the context's, so every
// session on the device shares it. The broker only raises the stack, heap and other per-thread
// limits (a raise costs the other sessions nothing they rely on; lowering would take from them),
// and refuses to change the persisting-L2 limits, which decide how every session's kernels use the
// cache: that refusal (cudaErrorNotSupported) is logged once, with the reason.
int cudaDeviceSetLimit(int limit, std::size_t value) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  shim::ReplyOf<wire::RequestKind::kDeviceLimit> reply{};
  const Error e = call<wire::RequestKind::kDeviceLimit>(wire::LimitRequest{limit, 1, value}, &reply);
  if (e == kErrorNotSupported) {
    gpubroker_log_unsupported_once("cudaDeviceSetLimit of an L2 cache limit (the device's cache is shared "
                                   "by every session)");
  }
  if (e == kSuccess && reply < value) return record(kErrorInvalidValue);
  return e;
}

// The profiler calls only mark the range a profiler (Nsight, nvprof) records; without one
// attached, as here, the runtime answers success and does nothing.
int cudaProfilerStart() {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return kSuccess;
}
int cudaProfilerStop() {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return kSuccess;
}

// The cache configuration is "only a preference" that the runtime may ignore (CUDA's words), and
// the context it would set is shared with every other session on the device: the process keeps
// its preference per device, cudaDeviceGetCacheConfig reads it back, and kernels run with the
// device's default split of L1 and shared memory (each kernel's own cudaFuncSetCacheConfig is
// served).
int cudaDeviceSetCacheConfig(int config) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (config < cudart::cudaFuncCachePreferNone || config > cudart::cudaFuncCachePreferEqual) {
    return record(kErrorInvalidValue);
  }
  __atomic_store_n(&g_cache_config[current_device()], config, __ATOMIC_RELAXED);
  return kSuccess;
}

int cudaDeviceGetCacheConfig(int* config) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (config == nullptr) return record(kErrorInvalidValue);
  *config = __atomic_load_n(&g_cache_config[current_device()], __ATOMIC_RELAXED);
  return kSuccess;
}

// A stream's attributes. Its priority is read from the broker. The synchronization policy is how a
// host thread waits for the stream: the shim always waits as cudaSyncPolicyAuto does (a short spin,
// then a sleep), so that is what it reports and the only one it takes. An access policy window
// reserves part of the L2 cache, which every session shares, so none is set: reading one gives the
// empty window, setting one is refused (logged once), as cudaDeviceSetLimit refuses the
// persisting-L2 limit. Other attributes are not served.
int cudaStreamGetAttribute(Stream stream, int attribute, cudart::cudaLaunchAttributeValue* value) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (value == nullptr) return record(kErrorInvalidValue);
  switch (attribute) {
    case cudart::cudaLaunchAttributePriority: {
      int priority = 0;
      const Error e = cudaStreamGetPriority(stream, &priority);
      if (e == kSuccess) value->priority = priority;
      return e;
    }
    case cudart::cudaLaunchAttributeSynchronizationPolicy:
    case cudart::cudaLaunchAttributeAccessPolicyWindow: {
      unsigned flags = 0;  // the stream must exist
      if (const Error e = cudaStreamGetFlags(stream, &flags); e != kSuccess) return e;
      std::memset(value, 0, sizeof *value);
      if (attribute == cudart::cudaLaunchAttributeSynchronizationPolicy) value->syncPolicy = cudart::cudaSyncPolicyAuto;
      return kSuccess;
    }
    default:
      gpubroker_log_unsupported_once("cudaStreamGetAttribute of an attribute other than priority, "
                                     "synchronization policy or access policy window");
      return record(kErrorNotSupported);
  }
}

int cudaStreamSetAttribute(Stream stream, int attribute, const cudart::cudaLaunchAttributeValue* value) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (value == nullptr) return record(kErrorInvalidValue);
  unsigned flags = 0;  // the stream must exist
  if (const Error e = cudaStreamGetFlags(stream, &flags); e != kSuccess) return e;
  if (attribute == cudart::cudaLaunchAttributeSynchronizationPolicy && value->syncPolicy == cudart::cudaSyncPolicyAuto) {
    return kSuccess;
  }
  gpubroker_log_unsupported_once(attribute == cudart::cudaLaunchAttributeAccessPolicyWindow
                                     ? "cudaStreamSetAttribute of an access policy window (the device's L2 cache is "
                                       "shared by every session)"
                                     : "cudaStreamSetAttribute of an attribute other than cudaSyncPolicyAuto");
  return record(kErrorNotSupported);
}

// Peer access would let this process's kernels on one device read another device's memory
// directly. Enabling it is a change to the devices' shared contexts (every session's kernels in
// them would gain it, and one session's disable would take it from the others), so the broker
// does not offer it: kernels never dereference another device's memory, and copies between
// devices go through cudaMemcpyPeer(Async), which the broker serves as peer copies whatever the
// access. So: "cannot access", and enabling it is refused as CUDA refuses it between devices
// without peer support.
int cudaDeviceCanAccessPeer(int* can_access, int device, int peer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (can_access == nullptr) return record(kErrorInvalidValue);
  if (const Error e = check_device(device); e != kSuccess) return e;
  if (const Error e = check_device(peer); e != kSuccess) return e;
  *can_access = 0;
  return kSuccess;
}

int cudaDeviceEnablePeerAccess(int peer, unsigned flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (flags != 0) return record(kErrorInvalidValue);
  if (const Error e = check_device(peer); e != kSuccess) return e;
  if (peer == current_device()) return record(kErrorInvalidDevice);
  return record(kErrorPeerAccessUnsupported);
}

int cudaDeviceDisablePeerAccess(int peer) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (const Error e = check_device(peer); e != kSuccess) return e;
  return record(kErrorPeerAccessNotEnabled);  // never enabled (cudaDeviceEnablePeerAccess)
}

}  // extern "C"
