// What a broker handler receives and returns. Each row of the call table (gpubroker/wire/
// cuda_calls.h) names a handler, area().handler(call, payload); the dispatch in session.cc reads
// the payload out of the broker's private copy of the slot, calls it, and concludes the request
// with what it returned:
//
//   Outcome<wire::PointerResult> SessionMemory::allocate(CallContext& call, const wire::MemAllocRequest& r) {
//     if (r.bytes > limit) return CallError{CUDA_ERROR_OUT_OF_MEMORY};
//     ...
//     return wire::PointerResult{address};
//   }
//
// A handler runs on its session's dispatcher thread. It never blocks on device work: a call that
// completes when device work is done returns kCompletesLater after arranging its completion.
#pragma once

#include <boost/outcome/result.hpp>
#include <cstdint>
#include <span>

#include "gpubroker/calls/protocol.h"
#include "ipc/result.h"
#include "ipc/server_session.h"

namespace gpubroker::broker {

// The request in hand.
struct CallContext {
  ipc::ServerSession& session;
  const wire::RequestSlot& request;  // the broker's own copy of the slot

  [[nodiscard]] const wire::RequestHeader& header() const { return request.header; }
  [[nodiscard]] bool synchronous() const { return (request.header.flags & wire::kSynchronous) != 0; }
  [[nodiscard]] wire::RequestKind kind() const { return static_cast<wire::RequestKind>(request.header.kind); }
};

// The status a call fails with: a CUresult, or a cublasStatus_t for the BLAS calls.
struct CallError {
  int status;
};

// A handler's lookup of one of the session's objects (a stream by its id, ...): the object, or
// the error the call fails with.
template <class T>
using Lookup = boost::outcome_v2::result<T, CallError, boost::outcome_v2::policy::terminate>;

// The handler has arranged the completion itself (a synchronize, once the device is done).
enum class Later { kCompletes };
inline constexpr Later kCompletesLater = Later::kCompletes;

// A handler's answer: the reply (and status 0), a CallError (the reply then goes back
// zero-filled), kCompletesLater, or an ipc::IpcError, which closes the session as a protocol
// violation (staged bytes out of step, a request no honest client sends).
template <class Reply>
class [[nodiscard]] Outcome {
 public:
  Outcome(Reply reply) : reply_(reply) {}  // NOLINT: the success case reads best unadorned
  Outcome(CallError error) : status_(error.status) {}
  Outcome(Later) : later_(true) {}
  Outcome(ipc::IpcError violation) : violation_(violation), violated_(true) {}

  // A status that still carries its reply (cuGraphExecUpdate reports why an update failed).
  static Outcome with_status(int status, Reply reply) {
    Outcome outcome(reply);
    outcome.status_ = status;
    return outcome;
  }

  [[nodiscard]] int status() const { return status_; }
  [[nodiscard]] const Reply& reply() const { return reply_; }
  [[nodiscard]] bool later() const { return later_; }
  [[nodiscard]] bool violated() const { return violated_; }
  [[nodiscard]] const ipc::IpcError& violation() const { return violation_; }

 private:
  Reply reply_{};
  int status_ = 0;
  bool later_ = false;
  ipc::IpcError violation_{};
  bool violated_ = false;
};

// A driver status as an answer with no reply, or with `reply`.
inline Outcome<wire::NoReply> answer(int status) {
  return Outcome<wire::NoReply>::with_status(status, wire::NoReply{});
}
template <class Reply>
Outcome<Reply> answer(int status, Reply reply) {
  return Outcome<Reply>::with_status(status, reply);
}

// The payload of a row, read from the broker's copy of the slot (see wire::payload_as).
template <class Payload>
struct PayloadReader {
  static Payload read(const wire::RequestSlot& request) { return wire::payload_as<Payload>(request); }
};
template <>
struct PayloadReader<wire::NoPayload> {
  static wire::NoPayload read(const wire::RequestSlot&) { return {}; }
};
template <class Head, std::size_t Max>
struct PayloadReader<wire::Tail<Head, Max>> {
  static wire::Tail<Head, Max> read(const wire::RequestSlot& request) {
    const std::size_t head = wire::PayloadBounds<Head>::min;
    return {PayloadReader<Head>::read(request),
            std::span<const std::byte>(request.payload + head, request.header.payload_bytes - head)};
  }
};

// The protocol violation of a staging transfer that went out of step.
inline ipc::IpcError pipe_violation(const ipc::IpcError& error) {
  if (error.code != ipc::IpcErrc::kProtocol) return error;
  return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kPipePosition)};
}

inline ipc::IpcError request_violation() {
  return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kRequest)};
}

}  // namespace gpubroker::broker
