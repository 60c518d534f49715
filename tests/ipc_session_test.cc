// Multi-process tests of sessions: the handshake, credentials, seals, ordering under concurrent
// submitters, and how fast each side notices that the other died. Servers and clients are real
// processes (fork).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <thread>
#include <utility>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "ipc/checksum.h"
#include "ipc/client_session.h"
#include "ipc/system.h"
#include "tests/support/eventually.h"
#include "tests/support/forked_server.h"
#include "tests/support/skip.h"

using namespace gpubroker;
using namespace std::chrono_literals;
using testing::ForkedServer;
using testing::TempDir;

namespace {

ipc::ListenerOptions listener_options(const TempDir& dir) {
  ipc::ListenerOptions options;
  options.socket_path = dir.path() + "/broker.sock";
  options.arena_bytes = 1ull << 30;
  return options;
}

std::int64_t ms_since(std::int64_t start_ns, std::int64_t end_ns) { return (end_ns - start_ns) / 1'000'000; }

// A handler whose synchronous requests never complete (the session thread sleeps), so that a
// client is left waiting.
ipc::HandlerFactory stalling_handler() {
  return [](const ipc::ServerSession&) {
    return [](ipc::ServerSession&, const wire::RequestSlot&) -> ipc::Result<void> {
      std::this_thread::sleep_for(30s);
      return boost::outcome_v2::success();
    };
  };
}

struct HandshakeReply {
  wire::Welcome welcome{};
  std::vector<ipc::UniqueFd> fds;
};

// A handshake done by hand, to look at what the broker hands over.
HandshakeReply raw_handshake(const std::string& socket_path,
                             std::uint64_t fingerprint = wire::kTransportProtocol.fingerprint) {
  auto socket = ipc::connect_seqpacket(socket_path);
  REQUIRE(socket);
  wire::Hello hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kProtocolVersion;
  hello.fingerprint = fingerprint;
  hello.pid = static_cast<std::uint32_t>(::getpid());
  REQUIRE(ipc::send_message(socket.value().get(), std::as_bytes(std::span(&hello, 1))));
  HandshakeReply reply;
  auto received = ipc::receive_message(socket.value().get(),
                                       std::as_writable_bytes(std::span(&reply.welcome, 1)), 1000ms);
  REQUIRE(received);
  REQUIRE(received.value().bytes == sizeof(wire::Welcome));
  reply.fds = std::move(received.value().fds);
  return reply;
}

}  // namespace

TEST_CASE("a client completes the handshake and echoes through the rings", "[ipc][session]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  CHECK(session.value()->session_id() == 1);
  CHECK(session.value()->broker_pid() == server.pid());
  const std::array<std::uint8_t, 5> message{1, 2, 3, 4, 5};
  auto reply = session.value()->call(wire::TransportKind::kEcho, std::as_bytes(std::span(message)));
  REQUIRE(reply);
  CHECK(reply.value().status == 0);
  REQUIRE(reply.value().result_bytes == 5);
  CHECK(std::memcmp(reply.value().result, message.data(), 5) == 0);
  CHECK(session.value()->post(wire::TransportKind::kNull, {}));
  CHECK(session.value()->call(wire::TransportKind::kNull, {}));
  CHECK(session.value()->alive());
}

TEST_CASE("the broker hands over sealed segments that the client can neither shrink nor grow", "[ipc][session][seal]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  HandshakeReply reply = raw_handshake(server.socket_path());
  REQUIRE(reply.welcome.status == static_cast<std::int32_t>(wire::HandshakeStatus::kAccepted));
  REQUIRE(reply.fds.size() == 3);
  const std::uint64_t sizes[] = {reply.welcome.control_bytes, reply.welcome.staging_bytes, reply.welcome.arena_bytes};
  for (std::size_t i = 0; i < 3; ++i) {
    const int fd = reply.fds[i].get();
    CHECK(ipc::check_sealed_memfd(fd, sizes[i]));
    errno = 0;
    CHECK(::ftruncate(fd, static_cast<off_t>(sizes[i] - 4096)) == -1);
    CHECK(errno == EPERM);
    errno = 0;
    CHECK(::ftruncate(fd, static_cast<off_t>(sizes[i] + 4096)) == -1);
    CHECK(errno == EPERM);
    errno = 0;
    CHECK(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == -1);  // no new seals either
    CHECK(errno == EPERM);
    CHECK(::fallocate(fd, 0, static_cast<off_t>(sizes[i]), 4096) == -1);
  }
}

TEST_CASE("each session gets segments of its own, never another session's", "[ipc][session][isolation]") {
  // The broker makes the next session's segments ahead of time; what one client wrote must not
  // reach the next, whether the first is still connected or gone.
  TempDir dir;
  ForkedServer server(listener_options(dir));
  std::vector<HandshakeReply> replies;
  std::vector<ino_t> inodes;
  for (int round = 0; round < 3; ++round) {
    HandshakeReply reply = raw_handshake(server.socket_path());
    REQUIRE(reply.welcome.status == static_cast<std::int32_t>(wire::HandshakeStatus::kAccepted));
    REQUIRE(reply.fds.size() == 3);
    const std::uint64_t sizes[] = {reply.welcome.control_bytes, reply.welcome.staging_bytes, 4096};
    for (std::size_t i = 0; i < 3; ++i) {
      struct stat st {};
      REQUIRE(::fstat(reply.fds[i].get(), &st) == 0);
      inodes.push_back(st.st_ino);
      void* map = ::mmap(nullptr, sizes[i], PROT_READ | PROT_WRITE, MAP_SHARED, reply.fds[i].get(), 0);
      REQUIRE(map != MAP_FAILED);
      auto* last = static_cast<unsigned char*>(map) + sizes[i] - 1;  // past every header
      CHECK(*last == 0);  // untouched by any earlier session
      *last = 0xa5;
      ::munmap(map, sizes[i]);
    }
    if (round == 1) replies.clear();  // the first two sessions end; the third comes after
    replies.push_back(std::move(reply));
  }
  std::sort(inodes.begin(), inodes.end());
  CHECK(std::adjacent_find(inodes.begin(), inodes.end()) == inodes.end());
}

TEST_CASE("a client refuses a segment that is not sealed", "[ipc][seal]") {
  const int fd = static_cast<int>(::memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 4096) == 0);
  auto checked = ipc::check_sealed_memfd(fd, 4096);
  REQUIRE_FALSE(checked);
  CHECK(checked.error().code == ipc::IpcErrc::kBadSegment);
  REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
  CHECK(ipc::check_sealed_memfd(fd, 4096));
  CHECK_FALSE(ipc::check_sealed_memfd(fd, 8192));  // wrong size
  ::close(fd);
}

TEST_CASE("a client built from another layout is refused at the handshake", "[ipc][session]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  HandshakeReply reply = raw_handshake(server.socket_path(), wire::kTransportProtocol.fingerprint ^ 1);
  CHECK(reply.welcome.status == static_cast<std::int32_t>(wire::HandshakeStatus::kFingerprintMismatch));
  CHECK(reply.fds.empty());
}

namespace {

// The transport's table, to be edited as another build's table would differ from it.
struct EditedTable {
  std::vector<wire::RequestShape> shapes{wire::kTransportShapes.begin(), wire::kTransportShapes.end()};
  wire::Protocol protocol() const { return {shapes, wire::protocol_fingerprint(shapes)}; }
};

}  // namespace

TEST_CASE("a client and a server built from different call tables refuse each other", "[ipc][session]") {
  TempDir dir;
  EditedTable edited;
  auto row = [&](wire::TransportKind kind) -> wire::RequestShape& {
    return edited.shapes[static_cast<std::size_t>(kind)];
  };
  SECTION("one reply size differs") { row(wire::TransportKind::kArenaChecksum).reply_bytes += 8; }
  SECTION("one posting differs") { row(wire::TransportKind::kStagePattern).posting = wire::Posting::kMayPost; }
  SECTION("the server speaks more kinds (the broker's whole table)") {
    edited.shapes.assign(wire::kProtocol.shapes.begin(), wire::kProtocol.shapes.end());
  }
  const wire::Protocol other = edited.protocol();
  REQUIRE(other.fingerprint != wire::kTransportProtocol.fingerprint);

  // A server with the edited table refuses a client of the transport's own, and the other way.
  for (const auto& [server_protocol, client_protocol] :
       {std::pair{other, wire::kTransportProtocol}, std::pair{wire::kTransportProtocol, other}}) {
    auto options = listener_options(dir);
    options.protocol = server_protocol;
    ForkedServer server(options);
    auto refused = ipc::ClientSession::connect(testing::client_options(server.socket_path(), client_protocol));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == ipc::IpcErrc::kRefused);
    CHECK(refused.error().detail == static_cast<std::int64_t>(wire::HandshakeStatus::kFingerprintMismatch));
    // The same table on both sides is served, and its segments carry its fingerprint.
    auto served = ipc::ClientSession::connect(testing::client_options(server.socket_path(), server_protocol));
    REQUIRE(served);
    CHECK(served.value()->call(wire::TransportKind::kNull, {}));
    const auto* control = reinterpret_cast<const wire::ControlSegment*>(served.value()->control_bytes().data());
    CHECK(control->header.fingerprint == server_protocol.fingerprint);
  }
}

TEST_CASE("a listener refuses a protocol whose shapes are not indexed by kind", "[ipc][session]") {
  TempDir dir;
  EditedTable edited;
  std::swap(edited.shapes[0], edited.shapes[1]);
  auto options = listener_options(dir);
  options.protocol = edited.protocol();
  auto listener = ipc::Listener::bind(options);
  REQUIRE_FALSE(listener);
  CHECK(listener.error().code == ipc::IpcErrc::kInvalidArgument);
  options.protocol = wire::Protocol{};
  CHECK_FALSE(ipc::Listener::bind(options));
}

TEST_CASE("a peer whose credentials the policy does not allow is refused", "[ipc][session][credentials][root]") {
  if (::getuid() != 0) SKIP_CASE("needs root to run a client under another uid");
  TempDir dir;
  SECTION("root is refused when only another uid is allowed") {
    auto options = listener_options(dir);
    options.policy.uids = {4242};
    ForkedServer server(options);
    auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    REQUIRE_FALSE(session);
    CHECK(session.error().code == ipc::IpcErrc::kRefused);
    CHECK(session.error().detail == static_cast<std::int64_t>(wire::HandshakeStatus::kCredentialsRefused));
  }
  SECTION("a process running as nobody is refused when only root is allowed, and root is served") {
    auto options = listener_options(dir);
    options.policy.uids = {0};
    ForkedServer server(options);
    const pid_t child = testing::run_in_child([&] {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
      auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
      if (session) return 11;
      return session.error().code == ipc::IpcErrc::kRefused &&
                     session.error().detail == static_cast<std::int64_t>(wire::HandshakeStatus::kCredentialsRefused)
                 ? 0
                 : 12;
    });
    CHECK(testing::wait_for_child(child) == 0);
    CHECK(ipc::ClientSession::connect(testing::client_options(server.socket_path())));
  }
  SECTION("an allowed group lets nobody in") {
    auto options = listener_options(dir);
    options.policy.gids = {65534};
    ForkedServer server(options);
    const pid_t child = testing::run_in_child([&] {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
      auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
      return session && session.value()->call(wire::TransportKind::kNull, {}) ? 0 : 11;
    });
    CHECK(testing::wait_for_child(child) == 0);
  }
}

namespace {

// Checks that the (thread, sequence) pairs of each thread arrive in order; a synchronous request
// with an empty payload answers {out-of-order count, pairs seen}.
ipc::HandlerFactory order_checker() {
  return [](const ipc::ServerSession&) {
    auto last = std::make_shared<std::array<std::int64_t, 64>>();
    last->fill(-1);
    auto counts = std::make_shared<wire::ChecksumResult>(wire::ChecksumResult{0, 0});
    return [=](ipc::ServerSession& session, const wire::RequestSlot& request) -> ipc::Result<void> {
      if (request.header.payload_bytes == 16) {
        std::uint64_t pair[2];
        std::memcpy(pair, request.payload, sizeof(pair));
        auto& previous = (*last)[pair[0] % 64];
        if (static_cast<std::int64_t>(pair[1]) != previous + 1) ++counts->checksum;
        previous = static_cast<std::int64_t>(pair[1]);
        ++counts->bytes;
      }
      session.complete(request.header, 0, std::as_bytes(std::span(counts.get(), 1)));
      return boost::outcome_v2::success();
    };
  };
}

}  // namespace

TEST_CASE("requests of each thread stay in order while many threads submit at once", "[ipc][session][order]") {
  TempDir dir;
  ForkedServer server(listener_options(dir), order_checker());
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  constexpr int kThreads = 8;
  constexpr std::uint64_t kPerThread = 20'000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        const std::uint64_t pair[2] = {static_cast<std::uint64_t>(t), i};
        // Mostly asynchronous, every 100th synchronous: both kinds share one order per thread.
        const bool ok = i % 100 == 99 ? bool(session.value()->call(wire::TransportKind::kEcho, std::as_bytes(std::span(pair))))
                                      : bool(session.value()->post(wire::TransportKind::kEcho, std::as_bytes(std::span(pair))));
        if (!ok) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  auto counts = session.value()->call(wire::TransportKind::kEcho, {});
  REQUIRE(counts);
  const auto result = counts.value().result_as<wire::ChecksumResult>();
  CHECK(failures == 0);
  CHECK(result.bytes == kThreads * kPerThread);  // none lost
  CHECK(result.checksum == 0);                   // none out of order
}

TEST_CASE("more threads than mailboxes still get every synchronous answer", "[ipc][session][order]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < static_cast<int>(wire::kMailboxes) + 44; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const int message[2] = {t, i};
        auto reply = session.value()->call(wire::TransportKind::kEcho, std::as_bytes(std::span(message)));
        if (!reply || reply.value().result_bytes != sizeof(message) ||
            std::memcmp(reply.value().result, message, sizeof(message)) != 0) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
}

TEST_CASE("the broker notices a killed idle client within 100 ms", "[ipc][session][death]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t client = testing::run_in_child([&] {
    auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    if (!session || !session.value()->call(wire::TransportKind::kNull, {})) return 1;
    [[maybe_unused]] auto n = ::write(ready[1], "r", 1);
    ::pause();
    return 0;
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  std::this_thread::sleep_for(50ms);  // let the session thread fall asleep
  const std::int64_t killed = ipc::monotonic_ns();
  ::kill(client, SIGKILL);
  auto report = server.next_report(testing::kSettleTimeout);
  testing::wait_for_child(client);
  REQUIRE(report);
  CHECK(report->end == ipc::SessionEnd::kClientGone);
  CHECK(ms_since(killed, report->ended_ns) < 100);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("the broker notices a client killed in the middle of a staged transfer within 100 ms", "[ipc][session][death]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t client = testing::run_in_child([&] {
    auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    if (!session) return 1;
    // Not larger: the kernel closes a killed process's socket only after unmapping its memory.
    std::vector<std::byte> big(64ull << 20);
    [[maybe_unused]] auto n = ::write(ready[1], "r", 1);
    for (;;) (void)session.value()->call(wire::TransportKind::kStageChecksum, {}, ipc::StagedOut{big});
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  std::this_thread::sleep_for(100ms);
  const std::int64_t killed = ipc::monotonic_ns();
  ::kill(client, SIGKILL);
  auto report = server.next_report(testing::kSettleTimeout);
  testing::wait_for_child(client);
  REQUIRE(report);
  CHECK(report->end == ipc::SessionEnd::kClientGone);
  CHECK(ms_since(killed, report->ended_ns) < 100);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("a client waiting on a killed broker gets an error within 100 ms", "[ipc][session][death]") {
  TempDir dir;
  ForkedServer server(listener_options(dir), stalling_handler());
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  std::int64_t returned = 0;
  bool failed_with_peer_gone = false;
  std::thread caller([&] {
    auto reply = session.value()->call(wire::TransportKind::kNull, {});
    returned = ipc::monotonic_ns();
    failed_with_peer_gone = !reply && reply.error().code == ipc::IpcErrc::kPeerGone;
  });
  std::this_thread::sleep_for(100ms);
  const std::int64_t killed = ipc::monotonic_ns();
  server.kill_now();
  caller.join();
  CHECK(failed_with_peer_gone);
  CHECK(ms_since(killed, returned) < 100);
  // Every later call fails at once.
  auto later = session.value()->call(wire::TransportKind::kNull, {});
  REQUIRE_FALSE(later);
  CHECK(later.error().code == ipc::IpcErrc::kPeerGone);
  CHECK_FALSE(session.value()->alive());
}

TEST_CASE("a client blocked on a full staging pipe gets an error within 100 ms when the broker dies", "[ipc][session][death]") {
  TempDir dir;
  ForkedServer server(listener_options(dir), stalling_handler());
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  std::vector<std::byte> big(64ull << 20);
  std::int64_t returned = 0;
  bool failed = false;
  std::thread caller([&] {
    auto reply = session.value()->call(wire::TransportKind::kStageChecksum, {}, ipc::StagedOut{big});
    returned = ipc::monotonic_ns();
    failed = !reply;
  });
  std::this_thread::sleep_for(100ms);
  const std::int64_t killed = ipc::monotonic_ns();
  server.kill_now();
  caller.join();
  CHECK(failed);
  CHECK(ms_since(killed, returned) < 100);
}

TEST_CASE("connecting with no broker fails at once", "[ipc][session]") {
  TempDir dir;
  const std::int64_t start = ipc::monotonic_ns();
  auto session = ipc::ClientSession::connect(testing::client_options(dir.path() + "/nobody-home.sock"));
  REQUIRE_FALSE(session);
  CHECK(session.error().code == ipc::IpcErrc::kSystem);
  CHECK(session.error().sys_errno == ENOENT);
  CHECK(ms_since(start, ipc::monotonic_ns()) < 100);
}

TEST_CASE("several sessions are served at once, each with its own id", "[ipc][session]") {
  TempDir dir;
  ForkedServer server(listener_options(dir));
  std::vector<std::unique_ptr<ipc::ClientSession>> sessions;
  for (int i = 0; i < 4; ++i) {
    auto s = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    REQUIRE(s);
    sessions.push_back(std::move(s.value()));
  }
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    CHECK(sessions[i]->session_id() == i + 1);
    CHECK(sessions[i]->call(wire::TransportKind::kNull, {}));
  }
}

namespace {

// Raises this process's descriptor limit to `wanted` where the hard limit allows; the limit it has.
rlim_t raise_descriptor_limit(rlim_t wanted) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = std::min(wanted, limit.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// `count` connections to `path` that never send a hello.
std::vector<ipc::UniqueFd> silent_connections(const std::string& path, int count) {
  std::vector<ipc::UniqueFd> held;
  for (int i = 0; i < count; ++i) {
    auto socket = ipc::connect_seqpacket(path);
    if (!socket) break;
    held.push_back(std::move(socket.value()));
  }
  return held;
}

}  // namespace

TEST_CASE("a thousand connections that never say hello, and malformed hellos, do not keep an honest client out",
          "[ipc][session][hostile]") {
  TempDir dir;
  const rlim_t descriptors = raise_descriptor_limit(4096);
  const int idle = static_cast<int>(std::min<rlim_t>(1000, descriptors > 200 ? (descriptors - 100) / 2 : 0));
  INFO("descriptor limit " << descriptors << ": " << idle << " silent connections");
  REQUIRE(idle >= 100);
  auto options = listener_options(dir);
  options.limits.handshakes = 4096;
  options.limits.handshakes_per_user = 4096;  // one user holds them all here: the per-user limit is the next case's
  options.handshake_timeout = 60s;            // they stay for the whole test
  ForkedServer server(options);
  const auto held = silent_connections(server.socket_path(), idle);
  CHECK(static_cast<int>(held.size()) == idle);
  // Short hellos: a whole message on a seqpacket socket, too short to be one.
  for (int i = 0; i < 5; ++i) {
    auto socket = ipc::connect_seqpacket(server.socket_path());
    REQUIRE(socket);
    const std::uint64_t half_hello = wire::kHelloMagic;
    REQUIRE(ipc::send_message(socket.value().get(), std::as_bytes(std::span(&half_hello, 1))));
    wire::Welcome welcome{};
    auto answer = ipc::receive_message(socket.value().get(), std::as_writable_bytes(std::span(&welcome, 1)), 5000ms);
    REQUIRE(answer);
    CHECK(welcome.status == static_cast<std::int32_t>(wire::HandshakeStatus::kMalformed));
  }
  for (int i = 0; i < 5; ++i) {
    const std::int64_t start = ipc::monotonic_ns();
    auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    REQUIRE(session);
    WARN("an honest handshake beside " << idle << " silent connections: " << (ipc::monotonic_ns() - start) / 1000
                                       << " us (a figure, not a check)");
    const std::array<std::uint8_t, 3> message{7, 8, 9};
    auto reply = session.value()->call(wire::TransportKind::kEcho, std::as_bytes(std::span(message)));
    REQUIRE(reply);
    CHECK(reply.value().result_bytes == 3);
  }
  CHECK(server.running());
}

TEST_CASE("a silent connection is closed at its handshake deadline, and the per-user handshake limit refuses the "
          "user past it with kBrokerFull while another user gets in",
          "[ipc][session][hostile][limits]") {
  TempDir dir;
  auto options = listener_options(dir);
  options.limits.handshakes_per_user = 8;
  options.handshake_timeout = 300ms;
  ForkedServer server(options);
  ::chmod(server.socket_path().c_str(), 0666);
  auto held = silent_connections(server.socket_path(), 8);
  REQUIRE(held.size() == 8);
  // The ninth of this user is turned away at once, told which limit and what raises it.
  auto refused = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ipc::IpcErrc::kRefused);
  CHECK((refused.error().detail & 0xff) == static_cast<std::int64_t>(wire::HandshakeStatus::kBrokerFull));
  CHECK((refused.error().detail >> 8) == static_cast<std::int64_t>(wire::BrokerLimit::kHandshakesPerUser));
  CHECK_THAT(ipc::describe(refused.error()), Catch::Contains("--max-handshakes-per-user"));
  if (::getuid() == 0) {
    const pid_t other = testing::run_in_child([&] {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
      return ipc::ClientSession::connect(testing::client_options(server.socket_path())) ? 0 : 11;
    });
    CHECK(testing::wait_for_child(other) == 0);
  }
  // At their deadline the silent ones are closed (the broker hangs up), and the user gets in.
  for (auto& fd : held) {
    pollfd p{fd.get(), POLLIN | POLLRDHUP, 0};
    CHECK(::poll(&p, 1, 10000) == 1);
  }
  CHECK(ipc::ClientSession::connect(testing::client_options(server.socket_path())));
}

TEST_CASE("sessions past the per-user and total limits are refused with the limit named, until one ends",
          "[ipc][session][limits]") {
  TempDir dir;
  auto options = listener_options(dir);
  options.limits.sessions_per_user = 2;
  options.limits.sessions = 3;
  ForkedServer server(options);
  auto first = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  auto second = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(first);
  REQUIRE(second);
  auto third = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE_FALSE(third);
  CHECK((third.error().detail >> 8) == static_cast<std::int64_t>(wire::BrokerLimit::kSessionsPerUser));
  CHECK_THAT(ipc::describe(third.error()), Catch::Contains("--max-sessions-per-user"));
  if (::getuid() == 0) {
    ::chmod(server.socket_path().c_str(), 0666);
    const pid_t other = testing::run_in_child([&] {
      if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 10;
      auto mine = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
      if (!mine) return 11;  // another user's first session: under both limits
      auto again = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
      if (again || (again.error().detail >> 8) != static_cast<std::int64_t>(wire::BrokerLimit::kSessions)) return 12;
      return 0;
    });
    CHECK(testing::wait_for_child(other) == 0);
  }
  // One ends: its user gets in again once the broker has seen it go.
  first.value().reset();
  CHECK(testing::poll_until([&] { return ipc::ClientSession::connect(testing::client_options(server.socket_path())).has_value(); },
                            testing::kSettleTimeout)
            .held);
}

// The trace file a client hands over at its handshake (wire::kHelloTraceFile) is appended to by the
// broker; only a regular file the client opened for appending is taken. The handler here writes
// one byte into the file it took (as the broker's device timeline does) and answers whether it had
// one; a read-only file, a file not opened O_APPEND and a pipe are refused, and the session is
// served all the same.
TEST_CASE("the broker takes a client's trace file only when it is a regular file open for appending", "[ipc][session][trace]") {
  TempDir dir;
  ForkedServer server(listener_options(dir), [](const ipc::ServerSession&) -> ipc::RequestHandler {
    return [](ipc::ServerSession& session, const wire::RequestSlot& request) -> ipc::Result<void> {
      const auto file = std::make_shared<ipc::UniqueFd>(session.take_trace_file());  // on the session's thread
      const bool had = file->get() >= 0;
      if (had) CHECK(::write(file->get(), "T", 1) == 1);
      session.complete(request.header, had ? 1 : 0);
      return boost::outcome_v2::success();
    };
  });
  const std::string path = dir.path() + "/trace";
  auto served_with = [&](int fd) {
    ipc::ClientOptions options = testing::client_options(server.socket_path());
    options.trace_fd = fd;
    auto session = ipc::ClientSession::connect(options);
    REQUIRE(session);
    auto reply = session.value()->call(wire::TransportKind::kNull, {});
    REQUIRE(reply);
    return reply.value().status;
  };
  auto size_of = [&] {
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_size;
  };
  {
    ipc::UniqueFd appending(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    REQUIRE(appending.get() >= 0);
    REQUIRE(::write(appending.get(), "client", 6) == 6);
    CHECK(served_with(appending.get()) == 1);
  }
  CHECK(size_of() == 7);  // the client's bytes, then the byte the broker wrote before it answered
  {
    ipc::UniqueFd read_only(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    CHECK(served_with(read_only.get()) == 0);
    ipc::UniqueFd overwriting(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    CHECK(served_with(overwriting.get()) == 0);
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    ipc::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    CHECK(served_with(write_end.get()) == 0);
    CHECK(served_with(-1) == 0);
  }
  CHECK(size_of() == 7);
}
