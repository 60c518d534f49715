// The client's side of the transport: one session per process, used by any number of threads.
//
// Example:
//
//   auto session = ClientSession::connect({.socket_path = path, .program = "llama-server"});
//   if (!session) return fail(session.error());
//   auto reply = session.value()->call(wire::TransportKind::kEcho, bytes);     // waits
//   session.value()->post(wire::TransportKind::kNull, {});                    // does not wait
//
// A client that speaks more kinds than the transport's own (the shims: gpubroker/calls) says so
// with ClientOptions::protocol, and names its kinds with its own enum.
//
// Thread safety: every member may be called from any thread at once. The requests of one thread
// reach the broker in the order that thread made them. Each thread that makes synchronous calls
// gets its own completion mailbox; threads beyond wire::kMailboxes - 1 share the last one, taking
// turns.
//
// Nothing here waits without bound: every wait checks, at least every kLivenessSlice, that the
// broker's end of the socket is still open and that the broker has not closed the session.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "gpubroker/wire/segments.h"
#include "ipc/doorbell.h"
#include "ipc/host_arena.h"
#include "ipc/result.h"
#include "ipc/staging_pipe.h"
#include "ipc/submission_ring.h"
#include "ipc/system.h"

namespace gpubroker::ipc {

struct ClientOptions {
  std::string socket_path;
  // The request kinds this client speaks, as the broker must: the handshake and the segment
  // headers compare its fingerprint. The transport's own kinds unless the caller speaks more (the
  // shims: gpubroker/calls' wire::kProtocol).
  wire::Protocol protocol = wire::kTransportProtocol;
  std::uint32_t abi = 0;
  std::string program;
  std::string visible_devices;
  WaitPolicy wait = WaitPolicy::of(WaitMode::kAdaptive);
  std::chrono::milliseconds handshake_timeout{1000};
  // The process's call trace file, for the broker to append the session's device work to; -1:
  // not tracing (wire::kHelloTraceFile).
  int trace_fd = -1;
};

// What a synchronous call returns.
struct Completion {
  std::int32_t status = 0;
  std::uint32_t result_bytes = 0;
  std::byte result[wire::kMailboxResultBytes];

  template <class T>
  [[nodiscard]] T result_as() const {
    T value{};
    std::memcpy(&value, result, std::min(sizeof(T), std::size_t{result_bytes}));
    return value;
  }
};

// The staged part of a request: bytes the client sends after the request, or receives after it.
struct StagedOut {
  std::span<const std::byte> bytes;
};
struct StagedIn {
  std::span<std::byte> bytes;
};

class ClientSession {
 public:
  static Result<std::unique_ptr<ClientSession>> connect(const ClientOptions& options);

  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;
  ~ClientSession();

  // A synchronous request: waits for its completion.
  Result<Completion> call(wire::KindNumber kind, std::span<const std::byte> payload);
  // A synchronous request whose staged bytes flow to the broker, pipelined with its handling.
  Result<Completion> call(wire::KindNumber kind, std::span<const std::byte> payload, StagedOut staged);
  // A synchronous request whose staged bytes flow back into `staged`.
  Result<Completion> call(wire::KindNumber kind, std::span<const std::byte> payload, StagedIn staged);

  // An asynchronous request: posted, not waited for. kPeerGone/kSessionClosed once the session
  // is over.
  Result<void> post(wire::KindNumber kind, std::span<const std::byte> payload);

  // Says which device the calling thread's requests name (wire::RequestHeader::device): `of_thread`
  // is called with `context` on the submitting thread, once per request. The layer above the
  // transport that knows what a thread's device is (the shims' connection) installs it once,
  // before any request is made; without it every request names device 0.
  using DeviceOfThread = std::uint32_t (*)(const void* context);
  void set_device_of_thread(DeviceOfThread of_thread, const void* context) {
    device_of_thread_ = of_thread;
    device_context_ = context;
  }

  [[nodiscard]] HostArena& arena() { return *arena_; }
  [[nodiscard]] std::uint64_t session_id() const { return session_id_; }
  [[nodiscard]] pid_t broker_pid() const { return broker_pid_; }

  // True while the broker keeps the session open. Never blocks.
  [[nodiscard]] bool alive() const;
  // Why the broker closed the session, once it has.
  [[nodiscard]] wire::SessionState state() const;
  [[nodiscard]] std::uint32_t violation() const;

  // Raw views of the segments, for tests that play a hostile client. Not for normal use.
  [[nodiscard]] std::span<std::byte> control_bytes() const;
  [[nodiscard]] std::span<std::byte> staging_bytes() const;
  [[nodiscard]] int socket_fd() const { return socket_.get(); }

 private:
  struct MailboxPool;
  class MailboxLease;
  ClientSession() = default;

  // Claims a slot, fills its header and inline payload; the caller publishes.
  Result<void> submit(wire::KindNumber kind, std::span<const std::byte> payload,
                      std::uint64_t staged_bytes, const MailboxLease* mailbox);
  Result<Completion> wait_for(const MailboxLease& mailbox);
  IpcError gone_error() const;
  PeerCheck peer_check() const;

  UniqueFd socket_;
  Mapping control_map_, staging_map_;
  std::unique_ptr<HostArena> arena_;
  wire::ControlSegment* control_ = nullptr;
  std::unique_ptr<SubmissionProducer> producer_;
  std::uint64_t pipe_bytes_ = 0;
  std::mutex to_broker_lock_, from_broker_lock_;  // one transfer per direction at a time
  std::unique_ptr<PipeWriter> to_broker_;
  std::unique_ptr<PipeReader> from_broker_;
  std::shared_ptr<MailboxPool> mailboxes_;
  WaitPolicy wait_;
  WaitPolicy reply_wait_{};  // for a call's reply: WaitPolicy::for_replies
  std::uint64_t session_id_ = 0;
  pid_t broker_pid_ = 0;
  DeviceOfThread device_of_thread_ = nullptr;
  const void* device_context_ = nullptr;
};

}  // namespace gpubroker::ipc
