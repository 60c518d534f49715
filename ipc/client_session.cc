#include "ipc/client_session.h"

#include "ipc/stream_copy.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace gpubroker::ipc {

namespace {

std::atomic<std::uint64_t> g_next_pool_id{1};

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

template <std::size_t N>
void copy_string(char (&destination)[N], const std::string& source) {
  const std::size_t n = std::min(source.size(), N - 1);
  std::memcpy(destination, source.data(), n);
  destination[n] = '\0';
}

// The process's name as /proc/self/comm has it. On the main thread, whose name that is, one
// prctl; elsewhere the file, read with plain system calls (the first /proc access of a process
// costs tens of microseconds, an ifstream as many again).
std::string own_program_name() {
  char name[64] = {};
  if (::gettid() == ::getpid() && ::prctl(PR_GET_NAME, name) == 0) return name;
  const int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  const ssize_t got = ::read(fd, name, sizeof(name) - 1);
  ::close(fd);
  std::string_view text(name, got > 0 ? static_cast<std::size_t>(got) : 0);
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return std::string(text);
}

bool header_matches(const wire::SegmentHeader& h, wire::SegmentKind kind, std::uint64_t bytes,
                    std::uint64_t fingerprint) {
  return h.magic == wire::kSegmentMagic && h.version == wire::kProtocolVersion &&
         h.kind == static_cast<std::uint32_t>(kind) && h.fingerprint == fingerprint && h.bytes == bytes;
}

}  // namespace

// Mailbox ownership. Indices 0 .. kMailboxes - 2 are leased to one thread each, for the thread's
// life; the last index is shared by any further threads, one call at a time.
struct ClientSession::MailboxPool {
  static constexpr std::uint16_t kShared = wire::kMailboxes - 1;

  const std::uint64_t id = g_next_pool_id.fetch_add(1, std::memory_order_relaxed);
  std::mutex lock;  // guards `free`
  std::vector<std::uint16_t> free;
  std::mutex shared_lock;  // held for a whole call on the shared mailbox
  // The sequence of each mailbox's last request; touched only by the thread holding the mailbox.
  std::uint32_t last_sequence[wire::kMailboxes] = {};

  MailboxPool() {
    for (std::uint16_t i = kShared; i-- > 0;) free.push_back(i);
  }
};

namespace {

// The mailboxes this thread holds, one per live session it has called; returned at thread exit.
struct HeldMailbox {
  std::uint64_t pool_id;
  std::uint16_t index;
  std::weak_ptr<void> pool;
  void (*give_back)(void* pool, std::uint16_t index);
};

struct ThreadMailboxes {
  std::vector<HeldMailbox> held;
  ~ThreadMailboxes() {
    for (HeldMailbox& m : held) {
      if (auto pool = m.pool.lock()) m.give_back(pool.get(), m.index);
    }
  }
};

thread_local ThreadMailboxes t_mailboxes;

}  // namespace

// One call's use of a mailbox, with the sequence its completion will carry.
class ClientSession::MailboxLease {
 public:
  explicit MailboxLease(const std::shared_ptr<MailboxPool>& pool) {
    for (const HeldMailbox& m : t_mailboxes.held) {
      if (m.pool_id == pool->id) {
        index_ = m.index;
        break;
      }
    }
    if (index_ == MailboxPool::kShared) {
      index_ = take(*pool);
      if (index_ != MailboxPool::kShared) {
        t_mailboxes.held.push_back({pool->id, index_, pool, [](void* p, std::uint16_t index) {
                                      auto* owner = static_cast<MailboxPool*>(p);
                                      std::lock_guard guard(owner->lock);
                                      owner->free.push_back(index);
                                    }});
      } else {
        shared_hold_ = std::unique_lock(pool->shared_lock);
      }
    }
    sequence_ = ++pool->last_sequence[index_];
  }

  [[nodiscard]] std::uint16_t index() const { return index_; }
  [[nodiscard]] std::uint32_t sequence() const { return sequence_; }

 private:
  static std::uint16_t take(MailboxPool& pool) {
    std::lock_guard guard(pool.lock);
    if (pool.free.empty()) return MailboxPool::kShared;
    const std::uint16_t index = pool.free.back();
    pool.free.pop_back();
    return index;
  }

  std::uint16_t index_ = MailboxPool::kShared;
  std::uint32_t sequence_ = 0;
  std::unique_lock<std::mutex> shared_hold_;
};

Result<std::unique_ptr<ClientSession>> ClientSession::connect(const ClientOptions& options) {
  auto socket = connect_seqpacket(options.socket_path);
  if (!socket) return socket.error();

  wire::Hello hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.abi = options.abi;
  hello.fingerprint = options.protocol.fingerprint;
  hello.pid = static_cast<std::uint32_t>(::getpid());
  copy_string(hello.program, options.program.empty() ? own_program_name() : options.program);
  copy_string(hello.visible_devices, options.visible_devices);
  if (options.trace_fd >= 0) hello.flags |= wire::kHelloTraceFile;
  const int trace_fds[] = {options.trace_fd};
  auto sent = send_message(socket.value().get(), std::as_bytes(std::span(&hello, 1)),
                           options.trace_fd >= 0 ? std::span<const int>(trace_fds) : std::span<const int>());

  // A broker that is full refuses a connection before its hello arrives, and hangs up: its answer
  // (which limit) is still to be read even where the hello could not be sent.
  wire::Welcome welcome{};
  auto received = receive_message(socket.value().get(), std::as_writable_bytes(std::span(&welcome, 1)),
                                  sent ? options.handshake_timeout : std::chrono::milliseconds(0));
  if (!received) return sent ? received.error() : sent.error();
  if (received.value().bytes != sizeof(welcome) || welcome.magic != wire::kWelcomeMagic) {
    return IpcError{IpcErrc::kProtocol};
  }
  if (welcome.status != static_cast<std::int32_t>(wire::HandshakeStatus::kAccepted)) {
    return IpcError{IpcErrc::kRefused, 0, refusal_detail(welcome.status, welcome.limit)};
  }
  if (welcome.version != wire::kProtocolVersion || welcome.fingerprint != options.protocol.fingerprint) {
    return IpcError{IpcErrc::kProtocol};
  }
  std::vector<UniqueFd>& fds = received.value().fds;
  if (fds.size() != 3 || welcome.control_bytes != sizeof(wire::ControlSegment) ||
      !is_power_of_two(welcome.pipe_bytes) || welcome.pipe_bytes < kStagingChunkBytes ||
      welcome.staging_bytes != wire::staging_segment_bytes(welcome.pipe_bytes)) {
    return IpcError{IpcErrc::kBadSegment};
  }
  // Seals and sizes first: a segment that could shrink under us could fault us later.
  for (auto [fd, bytes] : {std::pair{fds[0].get(), welcome.control_bytes},
                           std::pair{fds[1].get(), welcome.staging_bytes},
                           std::pair{fds[2].get(), welcome.arena_bytes}}) {
    if (auto sealed = check_sealed_memfd(fd, bytes); !sealed) return sealed.error();
  }
  auto control_map = map_shared(fds[0].get(), welcome.control_bytes);
  auto staging_map = map_shared(fds[1].get(), welcome.staging_bytes);
  auto arena_map = map_shared(fds[2].get(), welcome.arena_bytes);
  if (!control_map) return control_map.error();
  if (!staging_map) return staging_map.error();
  if (!arena_map) return arena_map.error();
  auto* control = control_map.value().as<wire::ControlSegment>();
  auto* staging = staging_map.value().as<wire::StagingSegment>();
  const std::uint64_t fingerprint = options.protocol.fingerprint;
  if (!header_matches(control->header, wire::SegmentKind::kControl, welcome.control_bytes, fingerprint) ||
      !header_matches(staging->header, wire::SegmentKind::kStaging, welcome.staging_bytes, fingerprint) ||
      staging->header.pipe_bytes != welcome.pipe_bytes) {
    return IpcError{IpcErrc::kBadSegment};
  }
  auto arena = HostArena::create(std::move(arena_map.value()));
  if (!arena) return arena.error();

  auto session = std::unique_ptr<ClientSession>(new ClientSession());
  session->socket_ = std::move(socket.value());
  session->control_ = control;
  session->producer_ = std::make_unique<SubmissionProducer>(*control);
  session->pipe_bytes_ = welcome.pipe_bytes;
  session->to_broker_ = std::make_unique<PipeWriter>(to_broker_pipe(staging, welcome.pipe_bytes));
  session->from_broker_ = std::make_unique<PipeReader>(from_broker_pipe(staging, welcome.pipe_bytes));
  session->control_map_ = std::move(control_map.value());
  session->staging_map_ = std::move(staging_map.value());
  session->arena_ = std::make_unique<HostArena>(std::move(arena.value()));
  session->mailboxes_ = std::make_shared<MailboxPool>();
  session->wait_ = options.wait;
  session->reply_wait_ = options.wait.for_replies(std::thread::hardware_concurrency());
  session->session_id_ = welcome.session_id;
  session->broker_pid_ = static_cast<pid_t>(welcome.broker_pid);
  return session;
}

ClientSession::~ClientSession() = default;

bool ClientSession::alive() const {
  return state() == wire::SessionState::kOpen && !peer_hung_up(socket_.get());
}

wire::SessionState ClientSession::state() const {
  // Pairs with the broker's release store in ServerSession::close().
  return static_cast<wire::SessionState>(
      std::atomic_ref(control_->session.state).load(std::memory_order_acquire));
}

std::uint32_t ClientSession::violation() const { return control_->session.violation; }

std::span<std::byte> ClientSession::control_bytes() const {
  return {control_map_.data(), control_map_.size()};
}

std::span<std::byte> ClientSession::staging_bytes() const {
  return {staging_map_.data(), staging_map_.size()};
}

IpcError ClientSession::gone_error() const {
  const wire::SessionState s = state();
  if (s == wire::SessionState::kOpen || s == wire::SessionState::kClosed) return IpcError{IpcErrc::kPeerGone};
  return IpcError{IpcErrc::kSessionClosed, 0, static_cast<std::int64_t>(violation())};
}

PeerCheck ClientSession::peer_check() const {
  return PeerCheck{[](const void* self) { return static_cast<const ClientSession*>(self)->alive(); }, this};
}

Result<void> ClientSession::submit(wire::KindNumber kind, std::span<const std::byte> payload,
                                   std::uint64_t staged_bytes, const MailboxLease* mailbox) {
  if (payload.size() > wire::kInlinePayloadBytes) return IpcError{IpcErrc::kInvalidArgument};
  wire::RequestSlot* slot = nullptr;
  std::uint64_t ticket = 0;
  if (producer_->claim(slot, ticket, peer_check(), wait_) != WaitResult::kReady) return gone_error();
  wire::RequestHeader& h = slot->header;
  h.kind = kind.value;
  h.flags = mailbox != nullptr ? wire::kSynchronous : 0;
  h.mailbox = mailbox != nullptr ? mailbox->index() : 0;
  h.payload_bytes = static_cast<std::uint16_t>(payload.size());
  h.mailbox_sequence = mailbox != nullptr ? mailbox->sequence() : 0;
  h.device = device_of_thread_ != nullptr ? device_of_thread_(device_context_) : 0;
  h.staged_bytes = staged_bytes;
  if (!payload.empty()) std::memcpy(slot->payload, payload.data(), payload.size());
  producer_->publish(slot, ticket);
  return boost::outcome_v2::success();
}

Result<Completion> ClientSession::wait_for(const MailboxLease& lease) {
  wire::Mailbox& mailbox = control_->mailboxes[lease.index()];
  std::atomic_ref sequence(mailbox.sequence);
  // Pairs with the broker's release store in ServerSession::complete().
  auto done = [&] { return sequence.load(std::memory_order_acquire) == lease.sequence(); };
  if (wait_until({&mailbox.sequence, &mailbox.sleepers}, done, peer_check(), reply_wait_) !=
      WaitResult::kReady) {
    return gone_error();
  }
  Completion completion;
  completion.status = mailbox.status;
  completion.result_bytes = std::min<std::uint32_t>(mailbox.result_bytes, wire::kMailboxResultBytes);
  std::memcpy(completion.result, mailbox.result, completion.result_bytes);
  return completion;
}

Result<Completion> ClientSession::call(wire::KindNumber kind, std::span<const std::byte> payload) {
  MailboxLease mailbox(mailboxes_);
  if (auto submitted = submit(kind, payload, 0, &mailbox); !submitted) return submitted.error();
  return wait_for(mailbox);
}

Result<Completion> ClientSession::call(wire::KindNumber kind, std::span<const std::byte> payload,
                                       StagedOut staged) {
  // The lock spans submit and stream, so that the order of transfers in the pipe is the order of
  // their requests in the ring.
  std::unique_lock guard(to_broker_lock_);
  MailboxLease mailbox(mailboxes_);
  if (auto submitted = submit(kind, payload, staged.bytes.size(), &mailbox); !submitted) return submitted.error();
  const std::byte* source = staged.bytes.data();
  auto streamed = to_broker_->write(
      staged.bytes.size(),
      [&](std::span<std::byte> piece) {
        std::memcpy(piece.data(), source, piece.size());
        source += piece.size();
      },
      peer_check(), wait_);
  guard.unlock();
  if (!streamed) return streamed.error().code == IpcErrc::kPeerGone ? gone_error() : streamed.error();
  return wait_for(mailbox);
}

Result<Completion> ClientSession::call(wire::KindNumber kind, std::span<const std::byte> payload,
                                       StagedIn staged) {
  std::unique_lock guard(from_broker_lock_);
  MailboxLease mailbox(mailboxes_);
  if (auto submitted = submit(kind, payload, staged.bytes.size(), &mailbox); !submitted) return submitted.error();
  std::byte* destination = staged.bytes.data();
  auto streamed = from_broker_->read(
      staged.bytes.size(),
      [&](std::span<const std::byte> piece) {
        stream_copy(destination, piece.data(), piece.size());
        destination += piece.size();
      },
      peer_check(), wait_);
  guard.unlock();
  if (!streamed) return streamed.error().code == IpcErrc::kPeerGone ? gone_error() : streamed.error();
  return wait_for(mailbox);
}

Result<void> ClientSession::post(wire::KindNumber kind, std::span<const std::byte> payload) {
  return submit(kind, payload, 0, nullptr);
}

}  // namespace gpubroker::ipc
