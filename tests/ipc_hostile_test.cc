// A client can write anything into its segments at any time. These tests play such a client and
// check that the server closes that session alone, with the right reason, and keeps serving
// everyone else.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <map>
#include <random>
#include <thread>
#include <vector>

#include "ipc/checksum.h"
#include "ipc/client_session.h"
#include "ipc/server_session.h"
#include "tests/support/eventually.h"
#include "tests/support/forked_server.h"

using namespace gpubroker;
using namespace std::chrono_literals;
using testing::ForkedServer;
using testing::TempDir;

namespace {

constexpr std::uint64_t kPipeBytes = 1ull << 20;

ipc::ListenerOptions options_in(const TempDir& dir) {
  ipc::ListenerOptions options;
  options.socket_path = dir.path() + "/broker.sock";
  options.pipe_bytes = kPipeBytes;
  options.arena_bytes = 256ull << 20;
  return options;
}

wire::ControlSegment* control_of(ipc::ClientSession& session) {
  return reinterpret_cast<wire::ControlSegment*>(session.control_bytes().data());
}
wire::StagingSegment* staging_of(ipc::ClientSession& session) {
  return reinterpret_cast<wire::StagingSegment*>(session.staging_bytes().data());
}

// Writes a hand-made request into the slot of `ticket` and publishes it, bypassing every check
// the client library makes.
void publish_raw(wire::ControlSegment* control, std::uint64_t ticket, wire::RequestHeader header,
                 std::span<const std::byte> payload = {}) {
  wire::RequestSlot& slot = control->slots[ticket & ipc::kRingMask];
  std::memcpy(&slot.header, &header, sizeof(header));
  if (!payload.empty()) std::memcpy(slot.payload, payload.data(), std::min(payload.size(), sizeof(slot.payload)));
  std::atomic_ref(slot.header.sequence).store(ticket + 1, std::memory_order_release);
  ipc::ring(ipc::bell(control->submitted));
}

// Synchronous (into mailbox 0, where nobody waits): kinds the table never lets a client post are
// refused before any later check when posted.
wire::RequestHeader header(wire::TransportKind kind, std::uint16_t payload_bytes = 0) {
  wire::RequestHeader h{};
  h.kind = static_cast<std::uint16_t>(kind);
  h.flags = wire::kSynchronous;
  h.payload_bytes = payload_bytes;
  return h;
}

struct Malformed {
  const char* what;
  ipc::ViolationCode expected;
  void (*send)(ipc::ClientSession&);
};

const Malformed kMalformed[] = {
    {"an unknown kind", ipc::ViolationCode::kUnknownKind,
     [](ipc::ClientSession& s) { publish_raw(control_of(s), 0, header(static_cast<wire::TransportKind>(0x7777))); }},
    {"a payload longer than the kind allows", ipc::ViolationCode::kPayloadSize,
     [](ipc::ClientSession& s) { publish_raw(control_of(s), 0, header(wire::TransportKind::kEcho, 200)); }},
    {"a payload length past the slot", ipc::ViolationCode::kPayloadSize,
     [](ipc::ClientSession& s) { publish_raw(control_of(s), 0, header(wire::TransportKind::kEcho, 0xffff)); }},
    {"a mailbox out of range", ipc::ViolationCode::kMailboxIndex,
     [](ipc::ClientSession& s) {
       auto h = header(wire::TransportKind::kNull);
       h.flags = wire::kSynchronous;
       h.mailbox = 300;
       publish_raw(control_of(s), 0, h);
     }},
    {"staged bytes on a kind that stages nothing", ipc::ViolationCode::kStagingMisuse,
     [](ipc::ClientSession& s) {
       auto h = header(wire::TransportKind::kNull);
       h.staged_bytes = 5;
       publish_raw(control_of(s), 0, h);
     }},
    {"unknown flags", ipc::ViolationCode::kRequest,
     [](ipc::ClientSession& s) {
       auto h = header(wire::TransportKind::kNull);
       h.flags = 0x80;
       publish_raw(control_of(s), 0, h);
     }},
    {"a call the table never lets a client post, posted", ipc::ViolationCode::kRequest,
     [](ipc::ClientSession& s) {
       // StageChecksum answers with a value: only a synchronous call of it has a place to go.
       auto h = header(wire::TransportKind::kStageChecksum);
       h.flags = 0;
       publish_raw(control_of(s), 0, h);
     }},
    {"a host-arena range past the arena", ipc::ViolationCode::kArenaRange,
     [](ipc::ClientSession& s) {
       const wire::ArenaRange range{(256ull << 20) - 8, 16};
       publish_raw(control_of(s), 0, header(wire::TransportKind::kArenaChecksum, sizeof(range)),
                   std::as_bytes(std::span(&range, 1)));
     }},
    {"a to-broker pipe tail far beyond the pipe", ipc::ViolationCode::kPipePosition,
     [](ipc::ClientSession& s) {
       staging_of(s)->to_broker.tail = 10ull << 30;
       auto h = header(wire::TransportKind::kStageChecksum);
       h.staged_bytes = 100;
       publish_raw(control_of(s), 0, h);
     }},
    {"a from-broker pipe head ahead of the broker", ipc::ViolationCode::kPipePosition,
     [](ipc::ClientSession& s) {
       staging_of(s)->from_broker.head = 1ull << 62;
       const std::uint64_t seed = 1;
       auto h = header(wire::TransportKind::kStagePattern, sizeof(seed));
       h.staged_bytes = 4 * kPipeBytes;  // more than fits, so the broker must read the head
       publish_raw(control_of(s), 0, h, std::as_bytes(std::span(&seed, 1)));
     }},
};

// Scribbles random words over both segments and publishes random requests for `duration`, then
// makes certain the session is malformed. Returns 0 once the broker has closed the session for a
// violation.
int hostile_client(const std::string& socket_path, std::uint64_t seed, std::chrono::milliseconds duration) {
  auto connected = ipc::ClientSession::connect(testing::client_options(socket_path));
  if (!connected) return 1;
  ipc::ClientSession& session = *connected.value();
  auto control = session.control_bytes();
  auto staging = session.staging_bytes();
  std::mt19937_64 random(seed);
  auto scribble = [&](std::span<std::byte> segment, std::size_t limit) {
    const std::size_t offset = (random() % (std::min(limit, segment.size()) / 8)) * 8;
    const std::uint64_t value = random();
    std::memcpy(segment.data() + offset, &value, sizeof(value));
  };
  std::uint64_t ticket = 0;
  // A hostile client that overruns its own ring only stalls its own session; this one waits for
  // ring space (briefly: scribbles may have hidden it) so that its final request is certain to be
  // read, and the test can expect a violation every time.
  bool ring_usable = true;
  auto publish = [&](wire::RequestHeader h, std::span<const std::byte> payload = {}) {
    std::atomic_ref sequence(control_of(session)->slots[ticket & ipc::kRingMask].header.sequence);
    const std::int64_t give_up = ipc::monotonic_ns() + 50'000'000;
    while (sequence.load(std::memory_order_acquire) != ticket) {
      if (ipc::monotonic_ns() > give_up) {
        ring_usable = false;
        return;
      }
    }
    publish_raw(control_of(session), ticket++, h, payload);
  };
  const std::int64_t end = ipc::monotonic_ns() + std::chrono::nanoseconds(duration).count();
  // For the first two thirds only well-formed requests go out between the scribbles, so that the
  // broker works on memory that keeps changing under it; then anything goes.
  const std::int64_t anything_goes = end - std::chrono::nanoseconds(duration).count() / 3;
  while (ipc::monotonic_ns() < end && session.alive() && ring_usable) {
    const bool malformed_allowed = ipc::monotonic_ns() >= anything_goes;
    switch (random() % 5) {
      case 0: scribble(control, control.size()); break;
      case 1: scribble(staging, random() % 2 ? 2048 : staging.size()); break;
      case 2: {
        if (!malformed_allowed) {
          const bool echo = random() % 2 == 0;
          auto h = header(echo ? wire::TransportKind::kEcho : wire::TransportKind::kNull,
                          echo ? static_cast<std::uint16_t>(random() % (wire::kMailboxResultBytes + 1)) : 0);
          h.flags = wire::kSynchronous;
          h.mailbox = static_cast<std::uint16_t>(random() % wire::kMailboxes);
          publish(h);
          break;
        }
        wire::RequestHeader h{};
        h.kind = static_cast<std::uint16_t>(random() % (static_cast<unsigned>(wire::TransportKind::kCount) + 2));
        h.flags = static_cast<std::uint16_t>(random() % 3);
        h.mailbox = static_cast<std::uint16_t>(random() % 300);
        h.payload_bytes = static_cast<std::uint16_t>(random() % 40);
        h.mailbox_sequence = static_cast<std::uint32_t>(random());
        const std::uint64_t staged[] = {0, random() % 5000, random()};
        h.staged_bytes = staged[random() % 3];
        std::uint64_t payload[5] = {random() % (300ull << 20), random() % 4096, random(), random(), random()};
        publish(h, std::as_bytes(std::span(payload)));
        break;
      }
      default: publish(header(wire::TransportKind::kNull)); break;
    }
    if (random() % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(random() % 200));
  }
  // Whatever state the broker is in — taking requests, or waiting on either pipe — this ends it.
  staging_of(session)->to_broker.tail = 1ull << 63;
  staging_of(session)->from_broker.head = 1ull << 63;
  // The broker's position is somewhere in the last lap before `ticket`: put a malformed request
  // where it will look, whichever position that is.
  for (std::uint64_t h = ticket >= wire::kRingSlots ? ticket + 1 - wire::kRingSlots : 0; h <= ticket; ++h) {
    publish_raw(control_of(session), h, header(static_cast<wire::TransportKind>(0xffff)));
  }
  (void)testing::poll_until([&] { return !session.alive(); });
  return session.state() == wire::SessionState::kViolation ? 0 : 2;
}

// Moves checksummed data both ways for `duration`; returns the number of failures.
int honest_client(const std::string& socket_path, std::chrono::milliseconds duration) {
  auto connected = ipc::ClientSession::connect(testing::client_options(socket_path));
  if (!connected) return 100;
  ipc::ClientSession& session = *connected.value();
  int failures = 0, rounds = 0;
  std::vector<std::byte> out(1 << 20), in(300'000), expected(300'000);
  const std::int64_t end = ipc::monotonic_ns() + std::chrono::nanoseconds(duration).count();
  for (std::uint64_t seed = 1; ipc::monotonic_ns() < end; ++seed, ++rounds) {
    ipc::fill_pattern(out, seed, 0);
    ipc::Checksum sum;
    sum.update(out);
    auto up = session.call(wire::TransportKind::kStageChecksum, {}, ipc::StagedOut{out});
    if (!up || up.value().result_as<wire::ChecksumResult>().checksum != sum.value()) ++failures;
    auto down = session.call(wire::TransportKind::kStagePattern, std::as_bytes(std::span(&seed, 1)), ipc::StagedIn{in});
    ipc::fill_pattern(expected, seed, 0);
    if (!down || in != expected) ++failures;
    if (!session.call(wire::TransportKind::kEcho, std::as_bytes(std::span(&seed, 1)))) ++failures;
  }
  return rounds > 0 ? std::min(failures, 99) : 101;
}

}  // namespace

TEST_CASE("each kind of malformed request closes only its own session, with its reason", "[ipc][hostile]") {
  TempDir dir;
  ForkedServer server(options_in(dir));
  auto bystander = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(bystander);
  for (const Malformed& m : kMalformed) {
    INFO("malformed: " << m.what);
    auto offender = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
    REQUIRE(offender);
    m.send(*offender.value());
    auto report = server.next_report(testing::kSettleTimeout);
    REQUIRE(report);
    CHECK(report->session_id == offender.value()->session_id());
    CHECK(report->end == ipc::SessionEnd::kViolation);
    CHECK(report->violation == m.expected);
    CHECK(offender.value()->state() == wire::SessionState::kViolation);
    CHECK(offender.value()->violation() == static_cast<std::uint32_t>(m.expected));
    auto after = offender.value()->call(wire::TransportKind::kNull, {});
    REQUIRE_FALSE(after);
    CHECK(after.error().code == ipc::IpcErrc::kSessionClosed);
    // The bystander never notices.
    CHECK(bystander.value()->call(wire::TransportKind::kNull, {}));
  }
  CHECK(server.running());
}

TEST_CASE("hostile clients scribbling over their segments are cut off while an honest client keeps working",
          "[ipc][hostile]") {
  TempDir dir;
  ForkedServer server(options_in(dir));
  constexpr int kHostile = 8;
  const pid_t honest = testing::run_in_child([&] { return honest_client(server.socket_path(), 3000ms); });
  std::map<pid_t, int> hostile_exit;
  for (int i = 0; i < kHostile; ++i) {
    const pid_t pid = testing::run_in_child(
        [&, i] { return hostile_client(server.socket_path(), 0x5eed + static_cast<std::uint64_t>(i), 250ms); });
    hostile_exit[pid] = testing::wait_for_child(pid);
  }
  const int honest_exit = testing::wait_for_child(honest);
  CHECK(honest_exit == 0);  // every transfer of the honest client was intact

  std::map<pid_t, ipc::SessionReport> reports;
  while (auto report = server.next_report(testing::kSettleTimeout)) {
    reports[report->pid] = *report;
    if (reports.size() == kHostile + 1) break;
  }
  for (const auto& [pid, exit_code] : hostile_exit) {
    INFO("hostile client " << pid);
    CHECK(exit_code == 0);
    REQUIRE(reports.count(pid) == 1);
    CHECK(reports[pid].end == ipc::SessionEnd::kViolation);
  }
  REQUIRE(reports.count(honest) == 1);
  CHECK(reports[honest].end == ipc::SessionEnd::kClientGone);
  CHECK(server.running());
  auto fresh = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(fresh);
  CHECK(fresh.value()->call(wire::TransportKind::kNull, {}));
}
