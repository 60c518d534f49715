#include "ipc/server_session.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "ipc/log.h"

namespace gpubroker::ipc {

namespace {

using wire::bytes_of;
using wire::payload_as;

wire::SegmentHeader segment_header(wire::SegmentKind kind, std::uint64_t bytes, std::uint64_t pipe_bytes,
                                   std::uint64_t fingerprint) {
  wire::SegmentHeader h{};
  h.magic = wire::kSegmentMagic;
  h.version = wire::kProtocolVersion;
  h.kind = static_cast<std::uint32_t>(kind);
  h.fingerprint = fingerprint;
  h.bytes = bytes;
  h.pipe_bytes = pipe_bytes;
  return h;
}

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

wire::Welcome welcome_of(std::uint64_t fingerprint, wire::HandshakeStatus status, wire::BrokerLimit limit) {
  wire::Welcome welcome{};
  welcome.magic = wire::kWelcomeMagic;
  welcome.version = wire::kProtocolVersion;
  welcome.fingerprint = fingerprint;
  welcome.broker_pid = static_cast<std::uint32_t>(::getpid());
  welcome.status = static_cast<std::int32_t>(status);
  welcome.limit = static_cast<std::uint32_t>(limit);
  return welcome;
}

// Both the stop flag and the socket: a session ends when its client goes or the broker stops.
struct PeerContext {
  int socket;
  const std::atomic<bool>* stop;
};

bool peer_and_broker_alive(const void* context) {
  const auto* c = static_cast<const PeerContext*>(context);
  return !(c->stop != nullptr && c->stop->load(std::memory_order_relaxed)) && !peer_hung_up(c->socket);
}

}  // namespace

const char* to_string(ViolationCode code) {
  switch (code) {
    case ViolationCode::kNone: return "none";
    case ViolationCode::kUnknownKind: return "unknown request kind";
    case ViolationCode::kPayloadSize: return "payload size outside the kind's bounds";
    case ViolationCode::kMailboxIndex: return "mailbox index out of range";
    case ViolationCode::kStagingMisuse: return "staged bytes on a kind that stages nothing";
    case ViolationCode::kPipePosition: return "staging pipe position moved implausibly";
    case ViolationCode::kArenaRange: return "host-arena range outside the arena";
    case ViolationCode::kRequest: return "request failed its kind's checks";
  }
  return "unknown violation";
}

bool CredentialPolicy::allows(const PeerCredentials& peer) const {
  if (uids.empty() && gids.empty()) return true;
  auto allowed_group = [this](gid_t gid) { return std::find(gids.begin(), gids.end(), gid) != gids.end(); };
  return std::find(uids.begin(), uids.end(), peer.uid) != uids.end() || allowed_group(peer.gid) ||
         std::any_of(peer.groups.begin(), peer.groups.end(), allowed_group);
}

ServerSession::~ServerSession() {
  if (control_ != nullptr && std::atomic_ref(control_->session.state).load() == 0) {
    close(wire::SessionState::kClosed);
  }
  if (open_sessions_) {
    std::lock_guard guard(open_sessions_->lock);
    --open_sessions_->total;
    if (--open_sessions_->by_user[peer_.uid] == 0) open_sessions_->by_user.erase(peer_.uid);
  }
}

WaitResult ServerSession::wait_for_request(WaitPolicy policy, const std::atomic<bool>& stop) {
  stop_ = &stop;
  PeerContext context{socket_.get(), &stop};
  return consumer_->wait([&] { return peer_and_broker_alive(&context); }, policy);
}

ViolationCode ServerSession::validate(const wire::RequestSlot& request) const {
  const wire::RequestHeader& h = request.header;
  const wire::RequestShape* shape = protocol_.shape_of(h.kind);
  if (shape == nullptr) return ViolationCode::kUnknownKind;
  if (h.payload_bytes < shape->min_payload || h.payload_bytes > shape->max_payload) {
    return ViolationCode::kPayloadSize;
  }
  if ((h.flags & ~wire::kSynchronous) != 0) return ViolationCode::kRequest;
  // A call whose answer is a value, or whose semantics return only once it is done, is never
  // posted by an honest client; posted, its completion would go nowhere while its work (a deferred
  // completion, a host-function waiter) still waits in the broker.
  if (shape->posting == wire::Posting::kCall && (h.flags & wire::kSynchronous) == 0) return ViolationCode::kRequest;
  if ((h.flags & wire::kSynchronous) != 0 && h.mailbox >= wire::kMailboxes) {
    return ViolationCode::kMailboxIndex;
  }
  if (shape->staging == wire::Staging::kNone && h.staged_bytes != 0) return ViolationCode::kStagingMisuse;
  return ViolationCode::kNone;
}

void ServerSession::complete(const wire::RequestHeader& request, std::int32_t status,
                             std::span<const std::byte> result) {
  if ((request.flags & wire::kSynchronous) == 0) return;
  wire::Mailbox& mailbox = control_->mailboxes[request.mailbox % wire::kMailboxes];
  const std::size_t n = std::min(result.size(), wire::kMailboxResultBytes);
  if (n != 0) std::memcpy(mailbox.result, result.data(), n);
  mailbox.status = result.size() > n ? static_cast<std::int32_t>(wire::Status::kTooLarge) : status;
  mailbox.result_bytes = static_cast<std::uint32_t>(n);
  // Pairs with the client's acquire load in ClientSession's wait for this mailbox.
  std::atomic_ref(mailbox.sequence).store(request.mailbox_sequence, std::memory_order_release);
  wake_sleepers({&mailbox.sequence, &mailbox.sleepers});
}

Result<void> ServerSession::receive_staged(std::uint64_t bytes,
                                           const std::function<void(std::span<const std::byte>)>& sink) {
  PeerContext context{socket_.get(), stop_};
  return to_broker_->read(bytes, sink, PeerCheck{peer_and_broker_alive, &context}, staging_policy_);
}

Result<void> ServerSession::send_staged(std::uint64_t bytes,
                                        const std::function<void(std::span<std::byte>)>& fill) {
  PeerContext context{socket_.get(), stop_};
  return from_broker_->write(bytes, fill, PeerCheck{peer_and_broker_alive, &context}, staging_policy_);
}

Result<void> ServerSession::receive_staged_windowed(
    std::uint64_t bytes, unsigned window, const std::function<void(std::span<const std::byte>, std::uint64_t)>& drain,
    const std::function<void(std::uint64_t)>& settle) {
  PeerContext context{socket_.get(), stop_};
  return to_broker_->read_windowed(bytes, window, drain, settle, PeerCheck{peer_and_broker_alive, &context},
                                   staging_policy_);
}

Result<void> ServerSession::send_staged_windowed(
    std::uint64_t bytes, unsigned window, const std::function<void(std::span<std::byte>, std::uint64_t)>& fill,
    const std::function<void(std::uint64_t)>& settle) {
  PeerContext context{socket_.get(), stop_};
  return from_broker_->write_windowed(bytes, window, fill, settle, PeerCheck{peer_and_broker_alive, &context},
                                      staging_policy_);
}

Result<std::span<std::byte>> ServerSession::arena_range(std::uint64_t offset, std::uint64_t bytes) const {
  if (offset > arena_map_.size() || bytes > arena_map_.size() - offset) {
    return IpcError{IpcErrc::kInvalidArgument};
  }
  return std::span<std::byte>(arena_map_.data() + offset, bytes);
}

void ServerSession::close(wire::SessionState state, ViolationCode violation) {
  violation_ = violation;
  control_->session.violation = static_cast<std::uint32_t>(violation);
  // Pairs with the client's acquire load of the state when its wait sees the hang-up.
  std::atomic_ref(control_->session.state).store(static_cast<std::uint32_t>(state), std::memory_order_release);
  hang_up(socket_.get());
  // Waiters wake, find their completion missing, and see the hang-up and the state.
  for (wire::Mailbox& mailbox : control_->mailboxes) wake_sleepers({&mailbox.sequence, &mailbox.sleepers});
}

Result<Listener> Listener::bind(ListenerOptions options) {
  if (!is_power_of_two(options.pipe_bytes) || options.pipe_bytes < kStagingChunkBytes) {
    return IpcError{IpcErrc::kInvalidArgument};
  }
  if (options.arena_bytes < (1u << 20)) return IpcError{IpcErrc::kInvalidArgument};
  if (!options.protocol.indexed_by_kind()) return IpcError{IpcErrc::kInvalidArgument};
  auto socket = listen_seqpacket(options.socket_path);
  if (!socket) return socket.error();
  // Non-blocking: take_connections accepts until none is left, and must not then wait.
  if (const int flags = ::fcntl(socket.value().get(), F_GETFL); flags < 0 ||
      ::fcntl(socket.value().get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return system_error(errno);
  }
  UniqueFd events(::epoll_create1(EPOLL_CLOEXEC));
  if (!events.valid()) return system_error(errno);
  epoll_event listening{};
  listening.events = EPOLLIN;
  listening.data.fd = socket.value().get();
  if (::epoll_ctl(events.get(), EPOLL_CTL_ADD, socket.value().get(), &listening) != 0) return system_error(errno);
  Listener listener(std::move(options), std::move(socket.value()), std::move(events));
  listener.reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (auto first = listener.make_segments()) listener.spare_.emplace(std::move(first.value()));
  return listener;
}

Result<std::unique_ptr<ServerSession>> Listener::accept(std::chrono::milliseconds timeout) {
  const std::int64_t give_up_ns = monotonic_ns() + std::chrono::nanoseconds(timeout).count();
  for (;;) {
    const std::int64_t now_ns = monotonic_ns();
    close_expired(now_ns);
    const std::int64_t wake_ns = std::min(give_up_ns, earliest_deadline());
    // Rounded up, so that a deadline less than a millisecond away is waited for, not spun on.
    const int wait_ms = static_cast<int>(std::max<std::int64_t>(0, (wake_ns - now_ns + 999'999) / 1'000'000));
    epoll_event ready[64];
    const int n = ::epoll_wait(events_.get(), ready, std::size(ready), wait_ms);
    if (n < 0 && errno != EINTR) return system_error(errno);
    // Level-triggered: what is not taken in this round is reported again in the next. A hello
    // that has come is served before new connections are taken, so that a burst of honest clients
    // (whose hellos follow their connects at once) never piles up against the handshake limits;
    // silent connections are still taken whenever no hello is waiting.
    int hello_fd = -1;
    bool listening_ready = false;
    for (int i = 0; i < n; ++i) {
      if (ready[i].data.fd == socket_.get()) {
        listening_ready = true;
      } else if (auto refused = refusing_.find(ready[i].data.fd); refused != refusing_.end()) {
        // Its hello (or its hang-up): read, so that closing does not reset the refusal away.
        std::byte drain[512];
        while (::recv(refused->first, drain, sizeof drain, MSG_DONTWAIT) > 0) {
        }
        ::epoll_ctl(events_.get(), EPOLL_CTL_DEL, refused->first, nullptr);
        refusing_.erase(refused);
      } else if (hello_fd < 0 && pending_.contains(ready[i].data.fd)) {
        hello_fd = ready[i].data.fd;
      }
    }
    if (listening_ready && hello_fd < 0) take_connections();
    if (hello_fd >= 0) {
      auto node = pending_.extract(hello_fd);
      ::epoll_ctl(events_.get(), EPOLL_CTL_DEL, hello_fd, nullptr);
      if (--pending_by_user_[node.mapped().peer.uid] == 0) pending_by_user_.erase(node.mapped().peer.uid);
      return handshake(std::move(node.mapped()));
    }
    if (monotonic_ns() >= give_up_ns) return IpcError{IpcErrc::kTimedOut};
  }
}

void Listener::take_connections() {
  // A bounded batch, so that a flood of connections cannot keep the hellos already here waiting.
  for (int taken = 0; taken < 16; ++taken) {
    UniqueFd connection(::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!connection.valid()) {
      if ((errno == EMFILE || errno == ENFILE) && reserve_fd_.valid()) {
        // No descriptor left: take the connection with the reserve one, tell it why, and keep
        // the reserve for next time.
        reserve_fd_.reset();
        UniqueFd turned_away(::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (turned_away.valid()) {
          refuse(turned_away.get(), wire::HandshakeStatus::kBrokerFull, wire::BrokerLimit::kDescriptors);
          log(LogLevel::kWarning, "connection refused: the broker has no file descriptor left (RLIMIT_NOFILE)");
        }
        turned_away.reset();
        reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        log(LogLevel::kWarning, "accept failed: {}", std::strerror(errno));
      }
      return;
    }
    auto peer = peer_credentials(connection.get());
    if (!peer) continue;
    if (const wire::BrokerLimit limit = limit_reached_by(peer.value()); limit != wire::BrokerLimit::kNone) {
      refuse(connection.get(), wire::HandshakeStatus::kBrokerFull, limit);
      log(LogLevel::kDebug, "connection of pid {} uid {} refused: limit {} reached", peer.value().pid,
          peer.value().uid, static_cast<unsigned>(limit));
      keep_until_read(std::move(connection));
      continue;
    }
    epoll_event waiting{};
    waiting.events = EPOLLIN | EPOLLRDHUP;
    waiting.data.fd = connection.get();
    if (::epoll_ctl(events_.get(), EPOLL_CTL_ADD, connection.get(), &waiting) != 0) {
      log(LogLevel::kWarning, "connection of pid {} closed: cannot watch it: {}", peer.value().pid, std::strerror(errno));
      continue;
    }
    const int fd = connection.get();
    ++pending_by_user_[peer.value().uid];
    pending_.emplace(fd, Pending{std::move(connection), peer.value(),
                                 monotonic_ns() + std::chrono::nanoseconds(options_.handshake_timeout).count()});
  }
}

wire::BrokerLimit Listener::limit_reached_by(const PeerCredentials& peer) const {
  const ListenerLimits& limits = options_.limits;
  if (pending_.size() >= limits.handshakes) return wire::BrokerLimit::kHandshakes;
  auto pending = pending_by_user_.find(peer.uid);
  if (pending != pending_by_user_.end() && pending->second >= limits.handshakes_per_user) {
    return wire::BrokerLimit::kHandshakesPerUser;
  }
  return wire::BrokerLimit::kNone;
}

void Listener::keep_until_read(UniqueFd connection) {
  if (refusing_.size() >= kMaxRefusing) return;  // a flood: closed at once
  epoll_event waiting{};
  waiting.events = EPOLLIN | EPOLLRDHUP;
  waiting.data.fd = connection.get();
  if (::epoll_ctl(events_.get(), EPOLL_CTL_ADD, connection.get(), &waiting) != 0) return;
  const int fd = connection.get();
  const auto linger = std::min<std::chrono::nanoseconds>(options_.handshake_timeout, std::chrono::milliseconds(200));
  refusing_.emplace(fd, Refusing{std::move(connection), monotonic_ns() + linger.count()});
}

void Listener::close_expired(std::int64_t now_ns) {
  std::erase_if(refusing_, [&](const auto& entry) {
    if (entry.second.deadline_ns > now_ns) return false;
    ::epoll_ctl(events_.get(), EPOLL_CTL_DEL, entry.first, nullptr);
    return true;
  });
  for (auto it = pending_.begin(); it != pending_.end();) {
    const Pending& p = it->second;
    if (p.deadline_ns > now_ns) {
      ++it;
      continue;
    }
    log(LogLevel::kDebug, "connection of pid {} uid {} closed: no hello within {} ms", p.peer.pid, p.peer.uid,
        options_.handshake_timeout.count());
    ::epoll_ctl(events_.get(), EPOLL_CTL_DEL, p.connection.get(), nullptr);
    if (--pending_by_user_[p.peer.uid] == 0) pending_by_user_.erase(p.peer.uid);
    it = pending_.erase(it);
  }
}

std::int64_t Listener::earliest_deadline() const {
  std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
  for (const auto& [fd, p] : pending_) earliest = std::min(earliest, p.deadline_ns);
  for (const auto& [fd, r] : refusing_) earliest = std::min(earliest, r.deadline_ns);
  return earliest;
}

UniqueFd ServerSession::take_trace_file() {
  UniqueFd file = std::move(trace_file_);
  if (file.get() >= 0 && !is_append_only_file(file.get())) {
    log(LogLevel::kWarning, "session {} (pid {}): its trace file is not a regular file on a local filesystem open for "
        "appending; its device work is not traced", id_, peer_.pid);
    return UniqueFd();
  }
  return file;
}

Result<std::unique_ptr<ServerSession>> Listener::handshake(Pending pending) {
  UniqueFd connection = std::move(pending.connection);
  const PeerCredentials& peer = pending.peer;
  auto refused = [&](wire::HandshakeStatus status, wire::BrokerLimit limit = wire::BrokerLimit::kNone) -> IpcError {
    refuse(connection.get(), status, limit);
    log(LogLevel::kWarning, "handshake refused for pid {} uid {}: status {} limit {}", peer.pid, peer.uid,
        static_cast<int>(status), static_cast<unsigned>(limit));
    return IpcError{IpcErrc::kRefused, 0, refusal_detail(static_cast<std::int32_t>(status), static_cast<std::uint32_t>(limit))};
  };

  wire::Hello hello{};
  auto received = receive_message(connection.get(), std::as_writable_bytes(std::span(&hello, 1)),
                                  std::chrono::milliseconds(0));
  if (!received) return received.error();
  if (received.value().bytes == 0) return IpcError{IpcErrc::kPeerGone};  // it hung up: nobody to tell
  if (received.value().bytes != sizeof(hello) || hello.magic != wire::kHelloMagic) {
    return refused(wire::HandshakeStatus::kMalformed);
  }
  // Credentials are judged after the hello has been read, so that the refusal reaches a client
  // that is still sending (a reply to an unread socket can be lost to a reset).
  if (!options_.policy.allows(peer)) return refused(wire::HandshakeStatus::kCredentialsRefused);
  if (hello.version != wire::kProtocolVersion) return refused(wire::HandshakeStatus::kVersionMismatch);
  if (hello.fingerprint != options_.protocol.fingerprint) {
    return refused(wire::HandshakeStatus::kFingerprintMismatch);
  }
  hello.program[sizeof(hello.program) - 1] = '\0';
  hello.visible_devices[sizeof(hello.visible_devices) - 1] = '\0';
  {
    std::lock_guard guard(open_sessions_->lock);
    const ListenerLimits& limits = options_.limits;
    if (open_sessions_->total >= limits.sessions) {
      return refused(wire::HandshakeStatus::kBrokerFull, wire::BrokerLimit::kSessions);
    }
    std::uint32_t& of_user = open_sessions_->by_user[peer.uid];
    if (of_user >= limits.sessions_per_user) {
      return refused(wire::HandshakeStatus::kBrokerFull, wire::BrokerLimit::kSessionsPerUser);
    }
    // Counted in now; ServerSession's destructor counts it out, whichever way this ends.
    ++of_user;
    ++open_sessions_->total;
  }
  auto session = std::unique_ptr<ServerSession>(new ServerSession());
  session->open_sessions_ = open_sessions_;
  session->peer_ = peer;

  const std::uint64_t control_bytes = sizeof(wire::ControlSegment);
  const std::uint64_t staging_bytes = wire::staging_segment_bytes(options_.pipe_bytes);
  auto segments = take_segments();
  if (!segments) {
    log(LogLevel::kWarning, "no segments for pid {}: {}", peer.pid, describe(segments.error()));
    return refused(wire::HandshakeStatus::kBrokerError);
  }
  Segments& s = segments.value();

  session->id_ = next_session_id_++;
  session->hello_ = hello;
  // The trace file is looked at only by the session's own thread (take_trace_file): a look at a
  // file on a filesystem that a process serves (FUSE) waits for that process.
  std::vector<UniqueFd>& passed = received.value().fds;
  if ((hello.flags & wire::kHelloTraceFile) != 0 && passed.size() == 1) {
    session->trace_file_ = std::move(passed[0]);
  } else if ((hello.flags & wire::kHelloTraceFile) != 0 || !passed.empty()) {
    log(LogLevel::kWarning, "pid {} sent {} descriptor(s) with its hello; they are not used", peer.pid, passed.size());
  }
  session->pipe_bytes_ = options_.pipe_bytes;
  session->protocol_ = options_.protocol;
  session->control_ = s.control_map.as<wire::ControlSegment>();
  if (options_.prepare_control) options_.prepare_control(*session->control_, hello, peer);
  session->consumer_.emplace(*session->control_);
  auto* staging = s.staging_map.as<wire::StagingSegment>();
  session->to_broker_ = std::make_unique<PipeReader>(to_broker_pipe(staging, options_.pipe_bytes));
  session->from_broker_ = std::make_unique<PipeWriter>(from_broker_pipe(staging, options_.pipe_bytes));
  session->control_map_ = std::move(s.control_map);
  session->staging_map_ = std::move(s.staging_map);
  session->arena_map_ = std::move(s.arena_map);

  wire::Welcome welcome = welcome_of(options_.protocol.fingerprint, wire::HandshakeStatus::kAccepted,
                                     wire::BrokerLimit::kNone);
  welcome.session_id = session->id_;
  welcome.control_bytes = control_bytes;
  welcome.staging_bytes = staging_bytes;
  welcome.arena_bytes = options_.arena_bytes;
  welcome.pipe_bytes = options_.pipe_bytes;
  const int fds[] = {s.control_fd.get(), s.staging_fd.get(), s.arena_fd.get()};
  auto sent = send_message(connection.get(), bytes_of(welcome), fds);
  // The next client's segments, made while this one maps its own.
  if (auto next = make_segments()) spare_.emplace(std::move(next.value()));
  if (!sent) return sent.error();
  session->socket_ = std::move(connection);
  log(LogLevel::kInfo, "session {} opened: pid {} uid {} program '{}' abi {}", session->id_,
      session->peer_.pid, session->peer_.uid, hello.program, hello.abi);
  return session;
}

void Listener::refuse(int connection, wire::HandshakeStatus status, wire::BrokerLimit limit) const {
  const wire::Welcome welcome = welcome_of(options_.protocol.fingerprint, status, limit);
  (void)send_message(connection, bytes_of(welcome));
}

Result<Listener::Segments> Listener::make_segments() const {
  const std::uint64_t control_bytes = sizeof(wire::ControlSegment);
  const std::uint64_t staging_bytes = wire::staging_segment_bytes(options_.pipe_bytes);
  auto control_fd = create_sealed_memfd("gpubroker-control", control_bytes);
  auto staging_fd = create_sealed_memfd("gpubroker-staging", staging_bytes);
  auto arena_fd = create_sealed_memfd("gpubroker-arena", options_.arena_bytes);
  if (!control_fd) return control_fd.error();
  if (!staging_fd) return staging_fd.error();
  if (!arena_fd) return arena_fd.error();
  auto control_map = map_shared(control_fd.value().get(), control_bytes);
  auto staging_map = map_shared(staging_fd.value().get(), staging_bytes);
  auto arena_map = map_shared(arena_fd.value().get(), options_.arena_bytes);
  if (!control_map) return control_map.error();
  if (!staging_map) return staging_map.error();
  if (!arena_map) return arena_map.error();
  auto* control = control_map.value().as<wire::ControlSegment>();
  control->header = segment_header(wire::SegmentKind::kControl, control_bytes, 0, options_.protocol.fingerprint);
  initialize_submission_ring(*control);
  staging_map.value().as<wire::StagingSegment>()->header =
      segment_header(wire::SegmentKind::kStaging, staging_bytes, options_.pipe_bytes, options_.protocol.fingerprint);
  return Segments{std::move(control_fd.value()), std::move(staging_fd.value()), std::move(arena_fd.value()),
                  std::move(control_map.value()), std::move(staging_map.value()), std::move(arena_map.value())};
}

Result<Listener::Segments> Listener::take_segments() {
  if (!spare_) return make_segments();
  Segments segments = std::move(*spare_);
  spare_.reset();
  return segments;
}

SessionEnd serve_session(ServerSession& session, const RequestHandler& handler, WaitPolicy policy,
                         const std::atomic<bool>& stop) {
  wire::RequestSlot request;
  auto end_with_violation = [&](ViolationCode code) {
    log(LogLevel::kWarning, "session {} (pid {}) closed: protocol violation: {} (request kind {})",
        session.id(), session.peer().pid, to_string(code), request.header.kind);
    session.close(wire::SessionState::kViolation, code);
    return SessionEnd::kViolation;
  };
  for (;;) {
    while (session.try_next(request)) {
      if (ViolationCode v = session.validate(request); v != ViolationCode::kNone) {
        return end_with_violation(v);
      }
      if (auto handled = handler(session, request); !handled) {
        if (handled.error().code == IpcErrc::kProtocol) {
          const auto detail = handled.error().detail;
          return end_with_violation(detail == 0 ? ViolationCode::kRequest : static_cast<ViolationCode>(detail));
        }
        break;  // the peer is gone or the broker stops: the wait below tells which
      }
      if (session.freed_unannounced() >= 64) session.announce_freed_slots();
    }
    if (session.wait_for_request(policy, stop) == WaitResult::kPeerGone) {
      if (stop.load(std::memory_order_relaxed)) {
        session.close(wire::SessionState::kShutdown);
        return SessionEnd::kStopped;
      }
      log(LogLevel::kInfo, "session {} (pid {}) ended: client gone", session.id(), session.peer().pid);
      session.close(wire::SessionState::kClosed);
      return SessionEnd::kClientGone;
    }
  }
}

void run_sessions(Listener& listener, const HandlerFactory& make_handler, WaitPolicy policy,
                  const std::atomic<bool>& stop,
                  const std::function<void(const SessionReport&)>& on_session_end) {
  // A finished thread keeps its stack until it is joined: each is joined as soon as it is seen
  // to have finished, so that a broker serving clients for months holds no memory per past session.
  struct SessionThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<SessionThread> threads;
  auto join_finished = [&threads] {
    std::erase_if(threads, [](SessionThread& t) {
      // Pairs with the release store that ends each session thread.
      if (!t.finished->load(std::memory_order_acquire)) return false;
      t.thread.join();
      return true;
    });
  };
  std::mutex report_lock;
  while (!stop.load(std::memory_order_relaxed)) {
    join_finished();
    auto accepted = listener.accept(std::chrono::milliseconds(20));
    if (!accepted) {
      if (accepted.error().code != IpcErrc::kTimedOut && accepted.error().code != IpcErrc::kRefused &&
          accepted.error().code != IpcErrc::kPeerGone) {  // a connection that hung up before its hello
        log(LogLevel::kWarning, "accept failed: {}", describe(accepted.error()));
      }
      continue;
    }
    // The session and its handler, shared with its thread; the handler's state (and its reclaim)
    // always goes before the session's memory, on whichever thread lets go of them.
    struct Served {
      std::unique_ptr<ServerSession> session;
      RequestHandler handler;
      void end(wire::SessionState state) {
        handler = nullptr;
        if (state != wire::SessionState::kOpen) session->close(state);
        session.reset();
      }
    };
    auto served = std::make_shared<Served>();
    served->session = std::move(accepted.value());
    const std::uint64_t id = served->session->id();
    const pid_t pid = served->session->peer().pid;
    auto finished = std::make_shared<std::atomic<bool>>(false);
    try {
      served->handler = make_handler(*served->session);
      std::thread thread([served, policy, &stop, &on_session_end, &report_lock, finished] {
        SessionEnd end = SessionEnd::kFailed;
        try {
          end = serve_session(*served->session, served->handler, policy, stop);
        } catch (const std::exception& e) {  // memory, most likely: the session goes, the broker stays
          log(LogLevel::kError, "session {} (pid {}) closed: the broker could not serve it: {}", served->session->id(),
              served->session->peer().pid, e.what());
          served->session->close(wire::SessionState::kClosed);
        }
        const SessionReport report{served->session->id(), served->session->peer().pid, end,
                                   served->session->violation(), monotonic_ns()};
        served->end(wire::SessionState::kOpen);
        {
          std::lock_guard guard(report_lock);
          if (on_session_end) on_session_end(report);
        }
        finished->store(true, std::memory_order_release);
      });
      threads.push_back({std::move(thread), std::move(finished)});
    } catch (const std::exception& e) {  // no thread (a process limit) or no memory for its handler
      log(LogLevel::kError, "session {} (pid {}) refused: the broker could not start serving it: {}", id, pid, e.what());
      served->end(wire::SessionState::kClosed);
      if (on_session_end) on_session_end(SessionReport{id, pid, SessionEnd::kFailed, ViolationCode::kNone, monotonic_ns()});
    }
  }
  for (SessionThread& t : threads) t.thread.join();
}

void initialize_submission_ring(wire::ControlSegment& control) {
  for (std::uint32_t i = 0; i < wire::kRingSlots; ++i) control.slots[i].header.sequence = i;
}

}  // namespace gpubroker::ipc
