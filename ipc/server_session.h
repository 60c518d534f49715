// The broker's side of the transport: a Listener that accepts clients and performs the handshake,
// and a ServerSession per client that takes its requests, completes them and moves its staged
// bytes.
//
// Example (one thread per session):
//
//   auto listener = Listener::bind({.socket_path = path, .protocol = wire::kProtocol});
//   auto session = listener.value().accept(std::chrono::milliseconds(100));
//   SessionEnd end = serve_session(*session.value(), handler, WaitPolicy::of(WaitMode::kAdaptive), stop);
//
// Everything a client writes into its segments is untrusted: requests are copied out before they
// are looked at, positions are kept privately, and every index, length and offset is checked. A
// check that fails closes that session with a ViolationCode; it never affects another session.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpubroker/wire/segments.h"
#include "ipc/doorbell.h"
#include "ipc/result.h"
#include "ipc/staging_pipe.h"
#include "ipc/submission_ring.h"
#include "ipc/system.h"

namespace gpubroker::ipc {

// Why the broker closed a session on the client. Stored in SessionWords::violation.
enum class ViolationCode : std::uint32_t {
  kNone = 0,
  kUnknownKind,      // RequestHeader::kind is not in the table
  kPayloadSize,      // payload_bytes outside the kind's bounds
  kMailboxIndex,     // mailbox index out of range
  kStagingMisuse,    // staged_bytes on a kind that stages nothing
  kPipePosition,     // a staging pipe position moved implausibly
  kArenaRange,       // a host-arena range outside the arena
  kRequest,          // a kind-specific check failed
};

const char* to_string(ViolationCode code);

// Which peers may open a session: those whose uid, primary gid or one of whose supplementary
// groups is listed. Both lists empty means any peer that can open the socket file, whose
// permissions are then the only gate.
struct CredentialPolicy {
  std::vector<uid_t> uids;
  std::vector<gid_t> gids;

  [[nodiscard]] bool allows(const PeerCredentials& peer) const;
};

// How many clients the listener takes at once; a client past one is refused with kBrokerFull and
// the limit's name (wire::BrokerLimit), at once, never left waiting. Handshakes are connections
// whose hello has not come yet: each costs the broker one descriptor until its deadline
// (ListenerOptions::handshake_timeout).
struct ListenerLimits {
  std::uint32_t sessions = 1024;
  std::uint32_t sessions_per_user = 256;
  std::uint32_t handshakes = 4096;
  std::uint32_t handshakes_per_user = 64;
};

struct ListenerOptions {
  std::string socket_path;
  // The request kinds the sessions speak: each request is checked against its kind's shape here,
  // and a client whose fingerprint differs is refused at the handshake. The transport's own kinds
  // unless the caller serves more (the broker: gpubroker/calls' wire::kProtocol).
  wire::Protocol protocol = wire::kTransportProtocol;
  CredentialPolicy policy;
  std::uint64_t pipe_bytes = 8ull << 20;    // each direction; power of two, chunk multiple
  std::uint64_t arena_bytes = 16ull << 30;  // sparse
  // How long a connection may take to send its hello; it is closed then. Handshakes run
  // concurrently: one that never finishes delays no other.
  std::chrono::milliseconds handshake_timeout{1000};
  ListenerLimits limits;
  // Fills what the session's client may read before its first request (the device table), after
  // the segments exist and before they are handed over. Called on the accepting thread.
  std::function<void(wire::ControlSegment&, const wire::Hello&, const PeerCredentials&)> prepare_control;
};

// The sessions open now, by uid: the accepting thread counts a session in, its destructor (on
// its own thread) counts it out.
struct OpenSessions {
  std::mutex lock;
  std::uint32_t total = 0;                           // guarded by lock
  std::unordered_map<uid_t, std::uint32_t> by_user;  // guarded by lock
};

class ServerSession {
 public:
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;
  ~ServerSession();

  [[nodiscard]] std::uint64_t id() const { return id_; }
  [[nodiscard]] const PeerCredentials& peer() const { return peer_; }
  [[nodiscard]] const wire::Hello& hello() const { return hello_; }
  // The call trace file the client handed over (wire::kHelloTraceFile), once; an empty UniqueFd
  // when it sent none, or one that is_append_only_file refuses (logged). On the session's own
  // thread only: looking at a file on a filesystem served by a process can wait for that process.
  UniqueFd take_trace_file();

  // Copies the next published request into `out`. Never blocks.
  bool try_next(wire::RequestSlot& out) { return consumer_->try_take(out); }

  // Waits for a request. kPeerGone also when `stop` becomes true.
  WaitResult wait_for_request(WaitPolicy policy, const std::atomic<bool>& stop);

  // Checks a request against its kind's shape. Kind-specific checks belong to the handler.
  [[nodiscard]] ViolationCode validate(const wire::RequestSlot& request) const;

  // Writes a synchronous request's completion into its mailbox and wakes the waiter; does
  // nothing for an asynchronous request. `result` must fit wire::kMailboxResultBytes.
  void complete(const wire::RequestHeader& request, std::int32_t status,
                std::span<const std::byte> result = {});

  // Drains `request.staged_bytes` from the to-broker pipe, handing each piece to `sink`.
  // Errors: kPeerGone, kProtocol (the session must then be closed with kPipePosition).
  Result<void> receive_staged(std::uint64_t bytes,
                              const std::function<void(std::span<const std::byte>)>& sink);
  // Streams `bytes` into the from-broker pipe, letting `fill` write each piece.
  Result<void> send_staged(std::uint64_t bytes,
                           const std::function<void(std::span<std::byte>)>& fill);

  // The same, for a consumer that finishes with each piece asynchronously (a DMA): up to `window`
  // pieces stay in use; settle(index) must return once piece `index` may be reused.
  Result<void> receive_staged_windowed(std::uint64_t bytes, unsigned window,
                                       const std::function<void(std::span<const std::byte>, std::uint64_t)>& drain,
                                       const std::function<void(std::uint64_t)>& settle);
  Result<void> send_staged_windowed(std::uint64_t bytes, unsigned window,
                                    const std::function<void(std::span<std::byte>, std::uint64_t)>& fill,
                                    const std::function<void(std::uint64_t)>& settle);

  // The host-arena range [offset, offset + bytes), or kViolation-worthy kInvalidArgument.
  [[nodiscard]] Result<std::span<std::byte>> arena_range(std::uint64_t offset, std::uint64_t bytes) const;

  // The whole staging segment, for registering it with the driver.
  [[nodiscard]] std::span<std::byte> staging_memory() const { return {staging_map_.data(), staging_map_.size()}; }

  // Ends the session: records the state (and violation) for the client and hangs up.
  void close(wire::SessionState state, ViolationCode violation = ViolationCode::kNone);

  [[nodiscard]] bool peer_alive() const { return !peer_hung_up(socket_.get()); }
  [[nodiscard]] ViolationCode violation() const { return violation_; }

  // Between calls to wait: lets producers that wait for ring space run again.
  void announce_freed_slots() { consumer_->announce_freed_slots(); }
  [[nodiscard]] std::uint32_t freed_unannounced() const { return consumer_->freed_unannounced(); }

 private:
  friend class Listener;
  ServerSession() = default;

  std::uint64_t id_ = 0;
  PeerCredentials peer_{};
  wire::Hello hello_{};
  UniqueFd socket_;
  UniqueFd trace_file_;
  Mapping control_map_, staging_map_, arena_map_;
  std::uint64_t pipe_bytes_ = 0;
  wire::Protocol protocol_;  // the listener's: validate() checks requests against its shapes
  wire::ControlSegment* control_ = nullptr;
  std::optional<SubmissionConsumer> consumer_;
  std::unique_ptr<PipeReader> to_broker_;
  std::unique_ptr<PipeWriter> from_broker_;
  WaitPolicy staging_policy_ = WaitPolicy::of(WaitMode::kAdaptive);
  const std::atomic<bool>* stop_ = nullptr;
  ViolationCode violation_ = ViolationCode::kNone;
  std::shared_ptr<OpenSessions> open_sessions_;  // counted out on destruction
};

class Listener {
 public:
  // Binds the socket (replacing a stale socket file, refusing if a broker answers on it).
  // kInvalidArgument for pipe or arena sizes it cannot use, or a protocol whose shapes are not
  // indexed by kind.
  static Result<Listener> bind(ListenerOptions options);

  // Takes new connections and reads the hellos that arrived, until one handshake ends or
  // `timeout` passes: the session of a client that was accepted, kTimedOut when none ended,
  // kRefused (detail: refusal_detail()) when one was turned away. A connection whose hello does not
  // come within the handshake timeout is closed. Sessions get consecutive ids from 1.
  Result<std::unique_ptr<ServerSession>> accept(std::chrono::milliseconds timeout);

  // Connections waiting for their hello, for tests and figures.
  [[nodiscard]] std::size_t handshakes_in_progress() const { return pending_.size(); }

  [[nodiscard]] const ListenerOptions& options() const { return options_; }
  [[nodiscard]] int fd() const { return socket_.get(); }

 private:
  Listener(ListenerOptions options, UniqueFd socket, UniqueFd events)
      : options_(std::move(options)), socket_(std::move(socket)), events_(std::move(events)) {}

  // A connection whose hello has not come yet.
  struct Pending {
    UniqueFd connection;
    PeerCredentials peer;
    std::int64_t deadline_ns;
  };
  void take_connections();
  void close_expired(std::int64_t now_ns);
  [[nodiscard]] std::int64_t earliest_deadline() const;
  [[nodiscard]] wire::BrokerLimit limit_reached_by(const PeerCredentials& peer) const;
  Result<std::unique_ptr<ServerSession>> handshake(Pending pending);
  // Sends a refusal; the caller closes the connection.
  void refuse(int connection, wire::HandshakeStatus status, wire::BrokerLimit limit) const;

  // A new session's three segments, created, mapped and initialized. Each set serves one session
  // only; the next one is made ready after a handshake, off the following client's path.
  struct Segments {
    UniqueFd control_fd, staging_fd, arena_fd;
    Mapping control_map, staging_map, arena_map;
  };
  Result<Segments> make_segments() const;
  Result<Segments> take_segments();

  ListenerOptions options_;
  UniqueFd socket_;
  UniqueFd events_;  // epoll: the listening socket and every pending connection
  // A descriptor held in reserve: when accept finds none left, it is given up to take the
  // connection, refuse it with kDescriptors, and taken back (else the socket stays readable
  // and the accepting thread spins).
  UniqueFd reserve_fd_;
  std::unordered_map<int, Pending> pending_;  // by descriptor; accepting thread only
  // Connections refused at once (a limit), kept until their hello has come and been read, or a
  // short deadline: a Unix socket closed with unread bytes resets its peer, whose read of the
  // refusal would then fail. At most kMaxRefusing; past that they are closed at once.
  struct Refusing {
    UniqueFd connection;
    std::int64_t deadline_ns;
  };
  static constexpr std::size_t kMaxRefusing = 256;
  std::unordered_map<int, Refusing> refusing_;  // by descriptor; accepting thread only
  void keep_until_read(UniqueFd connection);
  std::unordered_map<uid_t, std::uint32_t> pending_by_user_;
  std::shared_ptr<OpenSessions> open_sessions_ = std::make_shared<OpenSessions>();
  std::uint64_t next_session_id_ = 1;
  std::optional<Segments> spare_;
};

// How a served session ended.
// kFailed: the broker could not go on serving it (a thread, memory or another resource ran out);
// the session is closed and reclaimed, and the broker serves the others.
enum class SessionEnd : std::uint8_t { kClientGone, kViolation, kStopped, kFailed };

// What a service does with one valid request: complete it (if synchronous) and return success,
// or return an error: kProtocol (detail: ViolationCode) closes the session as a violation,
// kPeerGone as a departure.
using RequestHandler = std::function<Result<void>(ServerSession&, const wire::RequestSlot&)>;

// The dispatch loop of one session: take, validate, handle, until the client goes, violates the
// protocol or `stop` is set. Runs on the calling thread.
SessionEnd serve_session(ServerSession& session, const RequestHandler& handler, WaitPolicy policy,
                         const std::atomic<bool>& stop);

// What happened to a session, for whoever runs the server (tests watch it).
struct SessionReport {
  std::uint64_t session_id;
  pid_t pid;
  SessionEnd end;
  ViolationCode violation;
  std::int64_t ended_ns;  // monotonic clock
};

// Creates the handler of each new session, once its handshake is done.
using HandlerFactory = std::function<RequestHandler(const ServerSession&)>;

// Accepts clients until `stop` is set, serving each on a thread of its own with a handler from
// `make_handler`; calls `on_session_end` (serialized) as each ends. Returns once every session
// thread has finished.
void run_sessions(Listener& listener, const HandlerFactory& make_handler, WaitPolicy policy,
                  const std::atomic<bool>& stop,
                  const std::function<void(const SessionReport&)>& on_session_end);

}  // namespace gpubroker::ipc
