// The runtime shim's process state and the one path every call takes to the broker.
//
// Answered in the process, never crossing to the broker: the current device, the last error,
// device properties and attributes (from the device table), which pointers are device or pinned
// memory. Everything else is one request: synchronous (a mailbox wait) when CUDA's semantics
// need an answer, asynchronous otherwise, with asynchronous failures surfacing at the next
// synchronizing call as the broker reports them.
//
// Built twice, as libcudart.so.12 and libcudart.so.13 (GPUBROKER_CUDART_ABI = 12 or 13).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "shim/client/calls.h"
#include "shim/client/connection.h"
#include "shim/client/operations.h"

namespace gpubroker::shim::rt {

using shim::Answer;
using shim::PayloadOf;
using shim::ReplyOf;

using Error = int;  // cudaError_t

// The runtime error codes this file produces (values of CUDA's cudaError_t, equal in 12 and 13).
inline constexpr Error kSuccess = 0;
inline constexpr Error kErrorInvalidValue = 1;
inline constexpr Error kErrorMemoryAllocation = 2;
inline constexpr Error kErrorInvalidDevicePointer = 17;
inline constexpr Error kErrorInvalidMemcpyDirection = 21;
inline constexpr Error kErrorUnsupportedLimit = 215;
inline constexpr Error kErrorPeerAccessUnsupported = 217;
inline constexpr Error kErrorPeerAccessNotEnabled = 705;
inline constexpr Error kErrorDevicesUnavailable = 46;
inline constexpr Error kErrorNoDevice = 100;
inline constexpr Error kErrorInvalidDevice = 101;
inline constexpr Error kErrorInvalidResourceHandle = 400;
inline constexpr Error kErrorNotReady = 600;
inline constexpr Error kErrorNotSupported = 801;

// cudaMemcpyKind
inline constexpr int kHostToHost = 0, kHostToDevice = 1, kDeviceToHost = 2, kDeviceToDevice = 3, kDefault = 4;

// Records `error` as the calling thread's last error (if it is one) and returns it. A sticky error
// (a kernel fault or launch failure) is recorded for the whole process, reported once on stderr,
// and from then on returned by every call that needs the broker and by cudaGetLastError, which
// does not clear it, as CUDA does for a poisoned context.
Error record(Error error);
Error last_error(bool reset);
Error sticky_error();  // kSuccess until the process has one

// The calling thread's current device (an index into the visible devices), which libcuda shares
// (Connection::current_device): every request the thread makes runs on it in the broker.
int current_device();
void set_current_device(int device);  // checked by the caller

// Makes `device` the calling thread's current device until destroyed, then the one before: for a
// call the runtime makes on each device (cudaFreeHost's synchronization).
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) : previous_(current_device()) { set_current_device(device); }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  ~ScopedDevice() { set_current_device(previous_); }

 private:
  int previous_;
};

// The connection, or nullptr when the broker is unreachable.
Connection* connection();

// The calls to the broker, typed by the call table (shim/client/calls.h): the payload is the
// row's, and so is the reply. The completion's status (a CUresult, whose common values equal the
// runtime's) becomes the result, recorded as the thread's last error; a lost broker is
// kErrorDevicesUnavailable; once the process has a sticky error, no call leaves it.
namespace detail {
// The session a call goes through, or nullptr with `error` recorded.
ipc::ClientSession* session_for_call(Error& error);
Error transport_failed(const ipc::IpcError& error);
template <class Reply>
Error settle(const ipc::Result<Answer<Reply>>& answer, Reply* reply) {
  if (!answer) return transport_failed(answer.error());
  if (reply != nullptr) *reply = answer.value().reply;
  return record(answer.value().status);
}
}  // namespace detail

// A synchronous call; `reply` (when given) receives the row's reply.
template <wire::RequestKind Kind>
Error call(const PayloadOf<Kind>& payload, ReplyOf<Kind>* reply = nullptr) {
  Error error = kSuccess;
  ipc::ClientSession* session = detail::session_for_call(error);
  if (session == nullptr) return error;
  return detail::settle(shim::call<Kind>(*session, payload), reply);
}

// A synchronous call with staged bytes, to the broker (const bytes) or back from it.
template <wire::RequestKind Kind, class Bytes>
  requires(std::is_same_v<Bytes, std::span<const std::byte>> || std::is_same_v<Bytes, std::span<std::byte>>)
Error call(const PayloadOf<Kind>& payload, Bytes staged, ReplyOf<Kind>* reply = nullptr) {
  Error error = kSuccess;
  ipc::ClientSession* session = detail::session_for_call(error);
  if (session == nullptr) return error;
  return detail::settle(shim::call<Kind>(*session, payload, staged), reply);
}

// An asynchronous request; its failure surfaces at a later synchronizing call.
template <wire::RequestKind Kind, class... Tail>
Error post(const auto& payload, Tail... tail) {
  Error error = kSuccess;
  ipc::ClientSession* session = detail::session_for_call(error);
  if (session == nullptr) return error;
  auto posted = shim::post<Kind>(*session, payload, tail...);
  return posted ? kSuccess : detail::transport_failed(posted.error());
}

using wire::bytes_of;

// The memory map and object ids are the process's, shared with libcuda (shim/client/operations.h).
using shim::MemoryMap;
using shim::memory;

// Stream and event handles handed to the program: session-local ids, never broker pointers.
// 0, cudaStreamLegacy (0x1) and cudaStreamPerThread (0x2) are the session's default stream.
inline std::uint64_t new_stream_id() { return shim::new_object_id(); }
inline std::uint64_t new_event_id() { return shim::new_object_id(); }

// Host functions are the process's too (shim/client/operations.h).
using shim::hold_for_all_host_funcs;
using shim::hold_for_host_funcs;
using shim::host_funcs_pending;

}  // namespace gpubroker::shim::rt
