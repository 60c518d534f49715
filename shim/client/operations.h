// What the runtime and driver shims of one process share, so that the two APIs work on the same
// objects as CUDA's do (a stream from cudaStreamCreate launched on by cuLaunchKernel, memory from
// cuMemAlloc freed by cudaFree): the map of the process's memory, the ids of its streams, events,
// modules, functions and graphs, its sticky error, and the device operations both APIs make.
//
// It lives in libgpubroker-client.so, loaded once per process, so libcuda.so.1, libcudart.so.12
// and libcudart.so.13 (gpu-broker-run preloads both) see one copy.
//
// Every operation returns a CUresult value (whose common values equal cudaError_t's): the broker's
// status, CUDA_ERROR_DEVICE_UNAVAILABLE (46) when the broker is gone, the process's sticky error
// once it has one. The caller records it as its API does (the runtime's last error).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "shim/client/calls.h"
#include "shim/client/connection.h"

namespace gpubroker::shim {

// What the process knows of its memory: device allocations (by address) and pinned host-arena
// blocks. Thread-safe.
class MemoryMap {
 public:
  void add_device(std::uint64_t pointer, std::uint64_t bytes, int device);  // device: a visible index
  std::optional<std::uint64_t> remove_device(std::uint64_t pointer);
  [[nodiscard]] bool is_device(const void* pointer) const;
  // The visible index of the device whose allocation holds `pointer`, if any.
  [[nodiscard]] std::optional<int> device_of(const void* pointer) const;
  // The bases of the allocations on visible device `device`.
  [[nodiscard]] std::vector<std::uint64_t> device_allocations(int device) const;
  // The allocation holding `pointer`: its base and size.
  [[nodiscard]] std::optional<std::pair<std::uint64_t, std::uint64_t>> device_range(std::uint64_t pointer) const;

  void add_pinned(const void* pointer, std::uint64_t offset, std::uint64_t bytes);
  std::optional<std::uint64_t> remove_pinned(const void* pointer);
  // The arena offset of [pointer, pointer + bytes) if all of it is pinned memory.
  [[nodiscard]] std::optional<std::uint64_t> pinned_offset(const void* pointer, std::uint64_t bytes) const;

 private:
  struct Pinned {
    std::uint64_t offset;
    std::uint64_t bytes;
  };
  struct Device {
    std::uint64_t bytes;
    int device;
  };
  mutable std::mutex lock_;
  std::map<std::uint64_t, Device> device_;     // by address
  std::map<std::uintptr_t, Pinned> pinned_;  // host address -> arena range
};

MemoryMap& memory();

// A new id for a stream, event, module, function or graph of this process: session-local, never a
// broker pointer, and unique across every shim of the process (the broker keeps each kind apart,
// but two libraries counting alike would collide within a kind). 0, 1 and 2 are never returned:
// they name the default stream (NULL, cudaStreamLegacy, cudaStreamPerThread).
std::uint64_t new_object_id();

// The process's sticky error: 0 until a kernel fault or launch failure poisons the session (as it
// poisons a CUDA context), then that error. make_sticky() returns true for the call that set it.
int sticky_error();
bool make_sticky(int status);

// Host functions (host_funcs.cc): the function runs in this process, on its one callback thread,
// when its stream reaches it; work submitted to that stream afterwards waits, in the submitting
// thread, until it has returned (hold_for_host_funcs: one relaxed load while none is pending).
// Returns a CUresult value.
using HostFunction = void (*)(void* data);
using StreamCallback = void (*)(void* stream, int status, void* data);
int launch_host_func(Connection& c, std::uint64_t stream, HostFunction function, void* data);
int add_stream_callback(Connection& c, std::uint64_t stream, StreamCallback callback, void* data);
void hold_for_host_funcs(std::uint64_t stream);
void hold_for_all_host_funcs();
// The wire id of a stream (cudaStream_t and CUstream alike) that work is about to be submitted
// to, once the host functions enqueued on it before have returned.
inline std::uint64_t submission_stream_id(const void* stream) {
  const auto id = reinterpret_cast<std::uint64_t>(stream);
  hold_for_host_funcs(id);
  return id;
}
[[nodiscard]] bool host_funcs_pending(std::uint64_t stream);

namespace ops {

inline constexpr int kDeviceUnavailable = 46;  // CUDA_ERROR_DEVICE_UNAVAILABLE: the broker is gone

// A request of the call table (shim/client/calls.h types it), refused at once with the sticky
// error once the process has one: synchronous, synchronous with staged bytes (to the broker for
// const bytes, back from it otherwise), or posted (its failure surfaces at a later synchronizing
// call). `reply`, when given, receives the row's reply.
template <wire::RequestKind Kind>
int request(Connection& c, const PayloadOf<Kind>& payload, ReplyOf<Kind>* reply = nullptr) {
  if (const int sticky = sticky_error(); sticky != 0) return sticky;
  auto answer = shim::call<Kind>(c.session(), payload);
  if (!answer) return kDeviceUnavailable;
  if (reply != nullptr) *reply = answer.value().reply;
  return answer.value().status;
}

template <wire::RequestKind Kind, class Bytes>
  requires(std::is_same_v<Bytes, std::span<const std::byte>> || std::is_same_v<Bytes, std::span<std::byte>>)
int request(Connection& c, const PayloadOf<Kind>& payload, Bytes staged, ReplyOf<Kind>* reply = nullptr) {
  if (const int sticky = sticky_error(); sticky != 0) return sticky;
  auto answer = shim::call<Kind>(c.session(), payload, staged);
  if (!answer) return kDeviceUnavailable;
  if (reply != nullptr) *reply = answer.value().reply;
  return answer.value().status;
}

template <wire::RequestKind Kind, class... Tail>
int post(Connection& c, const auto& payload, Tail... tail) {
  if (const int sticky = sticky_error(); sticky != 0) return sticky;
  return shim::post<Kind>(c.session(), payload, tail...) ? 0 : kDeviceUnavailable;
}

enum class Direction { kHostToHost, kHostToDevice, kDeviceToHost, kDeviceToDevice, kDefault };

// One copy, in whichever of the three ways DESIGN.md describes fits its memory: pinned memory
// moves by direct transfer (asynchronous where `asynchronous`), pageable memory through staging,
// device to device as one message. kDefault tells the directions apart by the memory map. `stream`
// is a wire stream id whose earlier host functions the caller has already waited for.
int copy(Connection& c, void* destination, const void* source, std::size_t bytes, Direction direction,
         std::uint64_t stream, bool asynchronous);

// Sets `count` elements of `element_bytes` (1, 2 or 4) to `value` (its low bytes), posted on `stream`.
int memset(Connection& c, std::uint64_t pointer, std::uint32_t value, std::size_t count, std::uint32_t element_bytes,
           std::uint64_t stream);

// Device memory on the calling thread's current device; recorded in the memory map.
int allocate(Connection& c, std::size_t bytes, std::uint64_t& pointer);
// CUDA_ERROR_INVALID_VALUE for an address the map does not hold as an allocation's base.
int free(Connection& c, std::uint64_t pointer);

// Pinned host memory from the session's arena, registered with the driver through the broker.
int allocate_pinned(Connection& c, std::size_t bytes, void*& pointer);
// Waits for every device's work first (a copy in flight into the block must not land in memory
// the arena hands out again), as CUDA's free of pinned memory does; the first error of those
// synchronizations is the result. CUDA_ERROR_INVALID_VALUE for a pointer that is no block's base.
int free_pinned(Connection& c, void* pointer);

// A launch attribute as launch flags (cudaLaunchAttributeID and CUlaunchAttributeID number them
// alike; `value` is the attribute value's first int, as all three carried ones are): cooperative
// and programmatic stream serialization become flags, priority and "ignore" change only scheduling
// and are accepted; false for any other, which the broker cannot carry.
bool add_launch_attribute(int id, int value, std::uint8_t& flags);

// A kernel launch whose parameter block is packed as the device reads it: one posted ring message
// when the block fits the slot, staged (synchronously) otherwise. header.param_bytes is params.size().
int launch(Connection& c, const wire::LaunchRequest& header, std::span<const std::byte> params);

// cudaDeviceReset and cuDevicePrimaryCtxReset as far as the broker lets a session go: waits for
// the calling thread's current device and frees every allocation the process holds there. The
// process's streams, events and modules stay until it ends (a program that resets does not use
// them again); the device's context is the broker's, shared, and is not reset.
int reset_device(Connection& c);

int create_stream(Connection& c, unsigned flags, int priority, std::uint64_t& stream);
int create_event(Connection& c, unsigned flags, std::uint64_t& event);

}  // namespace ops

}  // namespace gpubroker::shim
