// Single-process tests of the transport's building blocks: shared-memory layouts, the ring, the
// staging pipe, doorbell waits and the checksum. The multi-process behaviour is in
// ipc_session_test.cc and ipc_hostile_test.cc.
#include <catch2/catch.hpp>

#include <memory>
#include <random>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/wire/segments.h"
#include "ipc/checksum.h"
#include "ipc/doorbell.h"
#include "ipc/server_session.h"
#include "ipc/staging_pipe.h"
#include "ipc/stream_copy.h"
#include "ipc/submission_ring.h"

using namespace gpubroker;

namespace {

template <class T>
constexpr bool is_wire_type = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;

static_assert(is_wire_type<wire::RequestSlot> && is_wire_type<wire::Mailbox> &&
              is_wire_type<wire::ControlSegment> && is_wire_type<wire::StagingSegment> &&
              is_wire_type<wire::Hello> && is_wire_type<wire::Welcome>);

// A pipe over heap memory laid out like the staging segment.
struct HeapStaging {
  explicit HeapStaging(std::uint64_t pipe_bytes)
      : storage(new std::byte[wire::staging_segment_bytes(pipe_bytes)]()), pipe_bytes(pipe_bytes) {}
  wire::StagingSegment* segment() { return reinterpret_cast<wire::StagingSegment*>(storage.get()); }
  std::unique_ptr<std::byte[]> storage;
  std::uint64_t pipe_bytes;
};

// The "peer" of these single-process tests stays alive for 20 s, so that a bug fails a test
// instead of hanging it.
const std::int64_t g_peer_deadline = ipc::monotonic_ns() + 20'000'000'000;
bool alive_until_deadline(const void*) { return ipc::monotonic_ns() < g_peer_deadline; }
constexpr ipc::PeerCheck kAlive{alive_until_deadline, nullptr};

}  // namespace

TEST_CASE("shared-memory layouts keep their pinned sizes and offsets", "[ipc][layout]") {
  CHECK(sizeof(wire::RequestHeader) == 32);
  CHECK(offsetof(wire::RequestHeader, device) == 20);
  CHECK(offsetof(wire::RequestHeader, staged_bytes) == 24);
  CHECK(sizeof(wire::RequestSlot) == 256);
  CHECK(sizeof(wire::Mailbox) == 256);
  CHECK(offsetof(wire::Mailbox, result) == 16);
  CHECK(offsetof(wire::Mailbox, sleepers) == 128);
  CHECK(sizeof(wire::Doorbell) == 256);
  CHECK(offsetof(wire::Doorbell, sleepers) == 128);
  CHECK(sizeof(wire::SegmentHeader) == 128);
  CHECK(sizeof(wire::SessionWords) == 128);
  CHECK(offsetof(wire::ControlSegment, session) == 128);
  CHECK(offsetof(wire::ControlSegment, submitted) == 256);
  CHECK(offsetof(wire::ControlSegment, slots_freed) == 512);
  CHECK(offsetof(wire::ControlSegment, slots) == 768);
  CHECK(offsetof(wire::ControlSegment, mailboxes) == 768 + 256 * wire::kRingSlots);
  CHECK(offsetof(wire::ControlSegment, devices) == 768 + 256 * (wire::kRingSlots + wire::kMailboxes));
  CHECK(sizeof(wire::DeviceRecord) == 896);
  CHECK(offsetof(wire::DeviceRecord, attributes) == 296);
  CHECK(sizeof(wire::DeviceTable) == 16 + 896 * wire::kMaxDevices);
  CHECK(sizeof(wire::ControlSegment) % wire::kLineBytes == 0);
  CHECK(sizeof(wire::PipeControl) == 768);
  CHECK(offsetof(wire::PipeControl, head) == 128);
  CHECK(sizeof(wire::StagingSegment) == 128 + 2 * 768);
  CHECK(sizeof(wire::Hello) == 352);
  CHECK(sizeof(wire::Welcome) == 72);
}

TEST_CASE("every request kind has a shape row in kind order", "[ipc][layout]") {
  for (const wire::Protocol& protocol : {wire::kTransportProtocol, wire::kProtocol}) {
    CHECK(protocol.indexed_by_kind());
    for (std::size_t i = 0; i < protocol.shapes.size(); ++i) {
      CHECK(protocol.shapes[i].kind == i);
      CHECK(protocol.shapes[i].max_payload <= wire::kInlinePayloadBytes);
      CHECK(protocol.shapes[i].min_payload <= protocol.shapes[i].max_payload);
    }
    CHECK(protocol.shape_of(static_cast<std::uint16_t>(protocol.shapes.size())) == nullptr);
    CHECK(protocol.shape_of(0xffff) == nullptr);
  }
  CHECK(wire::kProtocol.shapes.size() == static_cast<std::size_t>(wire::RequestKind::kCount));
  CHECK(wire::kTransportProtocol.shapes.size() == static_cast<std::size_t>(wire::TransportKind::kCount));
}

TEST_CASE("the whole protocol numbers and shapes the transport's kinds as the transport does", "[ipc][layout]") {
  // The CUDA half numbers its kinds after the transport's, which keep their numbers and shapes, so
  // that a transport-only peer and the broker agree on kinds 0 .. TransportKind::kCount - 1.
  REQUIRE(wire::kProtocol.shapes.size() > wire::kTransportShapes.size());
  for (std::size_t i = 0; i < wire::kTransportShapes.size(); ++i) {
    INFO("kind " << i << ", " << wire::kTransportShapes[i].name);
    CHECK(wire::kTransportShapes[i] == wire::kProtocol.shapes[i]);
  }
  CHECK(static_cast<std::size_t>(wire::kFirstDeviceKind) == wire::kTransportShapes.size());
}

TEST_CASE("a protocol's fingerprint covers the layouts and every field of every shape", "[ipc][layout]") {
  // Two peers built from tables that differ in any shape must not agree; nor may the protocols
  // that share the layouts but not the table.
  CHECK(wire::kProtocol.fingerprint == wire::protocol_fingerprint(wire::kRequestShapes));
  CHECK(wire::kProtocol.fingerprint != wire::kTransportProtocol.fingerprint);
  CHECK(wire::kProtocol.fingerprint != wire::kLayoutFingerprint);
  CHECK(wire::protocol_fingerprint({}) == wire::kLayoutFingerprint);

  const std::vector<wire::RequestShape> table(wire::kRequestShapes.begin(), wire::kRequestShapes.end());
  using Change = void (*)(wire::RequestShape&);
  const std::pair<const char*, Change> changes[] = {
      {"kind", [](wire::RequestShape& s) { s.kind ^= 1; }},
      {"min_payload", [](wire::RequestShape& s) { s.min_payload ^= 8; }},
      {"max_payload", [](wire::RequestShape& s) { s.max_payload ^= 8; }},
      {"reply_bytes", [](wire::RequestShape& s) { s.reply_bytes ^= 4; }},
      {"staging", [](wire::RequestShape& s) {
         s.staging = s.staging == wire::Staging::kNone ? wire::Staging::kToBroker : wire::Staging::kNone;
       }},
      {"posting", [](wire::RequestShape& s) {
         s.posting = s.posting == wire::Posting::kCall ? wire::Posting::kMayPost : wire::Posting::kCall;
       }},
  };
  for (std::size_t row : {std::size_t{0}, static_cast<std::size_t>(wire::RequestKind::kMemAlloc),
                          static_cast<std::size_t>(wire::RequestKind::kLaunchKernel), table.size() - 1}) {
    for (const auto& [field, change] : changes) {
      std::vector<wire::RequestShape> changed = table;
      change(changed[row]);
      INFO("row " << table[row].name << ", field " << field);
      CHECK(wire::protocol_fingerprint(changed) != wire::kProtocol.fingerprint);
    }
  }
  std::vector<wire::RequestShape> shorter(table.begin(), table.end() - 1);  // a row fewer
  CHECK(wire::protocol_fingerprint(shorter) != wire::kProtocol.fingerprint);
}

TEST_CASE("the ring hands requests over in ticket order across many laps", "[ipc][ring]") {
  auto control = std::make_unique<wire::ControlSegment>();
  ipc::initialize_submission_ring(*control);
  ipc::SubmissionProducer producer(*control);
  ipc::SubmissionConsumer consumer(*control);
  constexpr std::uint64_t kCount = wire::kRingSlots * 5 + 17;
  std::atomic<std::uint64_t> out_of_order{0};  // Catch2 assertions stay on the test's thread
  std::thread consumer_thread([&] {
    wire::RequestSlot out;
    for (std::uint64_t expected = 0; expected < kCount;) {
      if (!consumer.try_take(out)) {
        consumer.announce_freed_slots();
        continue;
      }
      std::uint64_t value;
      std::memcpy(&value, out.payload, sizeof(value));
      if (value != expected || out.header.payload_bytes != sizeof(value)) ++out_of_order;
      ++expected;
    }
    consumer.announce_freed_slots();
  });
  for (std::uint64_t i = 0; i < kCount; ++i) {
    wire::RequestSlot* slot = nullptr;
    std::uint64_t ticket = 0;
    REQUIRE(producer.claim(slot, ticket, [] { return true; }, ipc::WaitPolicy::of(ipc::WaitMode::kAdaptive)) ==
            ipc::WaitResult::kReady);
    REQUIRE(ticket == i);
    slot->header.payload_bytes = sizeof(i);
    std::memcpy(slot->payload, &i, sizeof(i));
    producer.publish(slot, ticket);
  }
  consumer_thread.join();
  CHECK(out_of_order == 0);
  CHECK_FALSE(consumer.has_request());
}

TEST_CASE("the consumer copies every payload length exactly, behind the producer or caught up", "[ipc][ring]") {
  auto control = std::make_unique<wire::ControlSegment>();
  ipc::initialize_submission_ring(*control);
  ipc::SubmissionProducer producer(*control);
  ipc::SubmissionConsumer consumer(*control);
  std::vector<std::byte> pattern(wire::kInlinePayloadBytes);
  std::uint64_t published = 0, taken = 0, wrong = 0;
  auto publish = [&] {
    wire::RequestSlot* slot = nullptr;
    std::uint64_t ticket = 0;
    REQUIRE(producer.claim(slot, ticket, [] { return true; }, ipc::WaitPolicy::of(ipc::WaitMode::kSpin)) ==
            ipc::WaitResult::kReady);
    const auto length = static_cast<std::uint16_t>(ticket % (wire::kInlinePayloadBytes + 1));
    slot->header.payload_bytes = length;
    slot->header.mailbox_sequence = static_cast<std::uint32_t>(ticket);
    ipc::fill_pattern(pattern, ticket, 0);
    std::memcpy(slot->payload, pattern.data(), wire::kInlinePayloadBytes);  // bytes past the length too
    producer.publish(slot, ticket);
    ++published;
  };
  auto take = [&] {
    wire::RequestSlot out;
    REQUIRE(consumer.try_take(out));
    const std::size_t length = taken % (wire::kInlinePayloadBytes + 1);
    ipc::fill_pattern(pattern, taken, 0);
    if (out.header.payload_bytes != length || out.header.mailbox_sequence != taken ||
        std::memcmp(out.payload, pattern.data(), length) != 0) {
      ++wrong;
    }
    ++taken;
  };
  // Batches of every size up to a full ring, so that the consumer takes slots both with more
  // published behind them (it prefetches those) and as the last one published.
  for (std::uint64_t batch : {1u, 2u, 3u, 7u, 64u, wire::kRingSlots, 1u, wire::kRingSlots - 1, 5u}) {
    for (std::uint64_t i = 0; i < batch; ++i) publish();
    for (std::uint64_t i = 0; i < batch; ++i) take();
    consumer.announce_freed_slots();
  }
  CHECK(taken == published);
  CHECK(wrong == 0);
  CHECK_FALSE(consumer.has_request());
}

TEST_CASE("the consumer clamps a payload length that claims more than the slot holds", "[ipc][ring]") {
  auto control = std::make_unique<wire::ControlSegment>();
  ipc::initialize_submission_ring(*control);
  ipc::SubmissionConsumer consumer(*control);
  control->slots[0].header.payload_bytes = 0xffff;  // hostile
  control->slots[0].header.sequence = 1;
  wire::RequestSlot out;
  REQUIRE(consumer.try_take(out));  // copies at most the slot; validation rejects it later
  CHECK(out.header.payload_bytes == 0xffff);
  CHECK(control->slots[0].header.sequence == wire::kRingSlots);
}

TEST_CASE("the staging pipe carries any size intact, in pieces, between two threads", "[ipc][staging]") {
  HeapStaging staging(1 << 20);
  ipc::PipeWriter writer(ipc::to_broker_pipe(staging.segment(), staging.pipe_bytes));
  ipc::PipeReader reader(ipc::to_broker_pipe(staging.segment(), staging.pipe_bytes));
  const auto policy = ipc::WaitPolicy::of(ipc::WaitMode::kAdaptive);
  for (std::uint64_t size : {0ull, 1ull, 4095ull, 256ull * 1024, 256ull * 1024 + 1, (5ull << 20) + 3}) {
    std::vector<std::byte> source(size), destination(size);
    ipc::fill_pattern(source, size, 0);
    bool read_ok = false, pieces_ok = true;
    std::thread consumer([&] {
      std::size_t at = 0;
      read_ok = bool(reader.read(size, [&](std::span<const std::byte> piece) {
        pieces_ok = pieces_ok && piece.size() <= ipc::kStagingChunkBytes;
        std::memcpy(destination.data() + at, piece.data(), piece.size());
        at += piece.size();
      }, kAlive, policy));
    });
    std::size_t at = 0;
    REQUIRE(writer.write(size, [&](std::span<std::byte> piece) {
      std::memcpy(piece.data(), source.data() + at, piece.size());
      at += piece.size();
    }, kAlive, policy));
    consumer.join();
    CHECK(read_ok);
    CHECK(pieces_ok);
    CHECK(source == destination);
  }
}

TEST_CASE("a staging pipe position that runs ahead of the pipe is a protocol error", "[ipc][staging]") {
  HeapStaging staging(1 << 20);
  ipc::PipeReader reader(ipc::to_broker_pipe(staging.segment(), staging.pipe_bytes));
  staging.segment()->to_broker.tail = 3ull << 20;  // three pipes' worth: impossible
  auto result = reader.read(16, [](auto) { FAIL("no bytes may be handed out"); }, kAlive,
                            ipc::WaitPolicy::of(ipc::WaitMode::kSleep));
  REQUIRE_FALSE(result);
  CHECK(result.error().code == ipc::IpcErrc::kProtocol);

  ipc::PipeWriter writer(ipc::from_broker_pipe(staging.segment(), staging.pipe_bytes));
  staging.segment()->from_broker.head = 5ull << 20;  // ahead of anything written
  std::vector<std::byte> big((2 << 20));
  auto written = writer.write(big.size(), [](auto piece) { std::memset(piece.data(), 0, piece.size()); },
                              kAlive, ipc::WaitPolicy::of(ipc::WaitMode::kSleep));
  REQUIRE_FALSE(written);
  CHECK(written.error().code == ipc::IpcErrc::kProtocol);
}

TEST_CASE("a wait ends when the peer is gone, within a liveness slice", "[ipc][doorbell]") {
  wire::Doorbell bell{};
  std::atomic<bool> alive{true};
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    alive = false;
  });
  auto result = ipc::wait_until(ipc::bell(bell), [] { return false; }, [&] { return alive.load(); },
                                ipc::WaitPolicy::of(ipc::WaitMode::kAdaptive));
  killer.join();
  CHECK(result == ipc::WaitResult::kPeerGone);
}

TEST_CASE("a sleeping waiter is woken by a ring", "[ipc][doorbell]") {
  wire::Doorbell bell{};
  std::atomic<bool> flag{false};
  std::thread ringer([&] {
    while (std::atomic_ref(bell.sleepers).load() == 0) std::this_thread::yield();
    flag = true;
    ipc::ring(ipc::bell(bell));
  });
  auto result = ipc::wait_until(ipc::bell(bell), [&] { return flag.load(); }, [] { return true; },
                                ipc::WaitPolicy::of(ipc::WaitMode::kSleep));
  ringer.join();
  CHECK(result == ipc::WaitResult::kReady);
  CHECK(bell.sequence == 1);
  CHECK(bell.sleepers == 0);
}

TEST_CASE("a deadline ends a wait with kTimedOut", "[ipc][doorbell]") {
  wire::Doorbell bell{};
  auto result = ipc::wait_until(ipc::bell(bell), [] { return false; }, [] { return true; },
                                ipc::WaitPolicy::of(ipc::WaitMode::kSleep), ipc::monotonic_ns() + 5'000'000);
  CHECK(result == ipc::WaitResult::kTimedOut);
}

TEST_CASE("the checksum does not depend on how the stream is cut", "[ipc][checksum]") {
  std::vector<std::byte> data(100'003);
  ipc::fill_pattern(data, 42, 0);
  ipc::Checksum whole;
  whole.update(data);
  std::mt19937_64 random(1);
  for (int trial = 0; trial < 20; ++trial) {
    ipc::Checksum pieces;
    for (std::size_t at = 0; at < data.size();) {
      const std::size_t n = std::min<std::size_t>(random() % 5000, data.size() - at);
      pieces.update(std::span(data).subspan(at, n));
      at += n;
    }
    CHECK(pieces.value() == whole.value());
  }
  data[777] ^= std::byte{1};
  ipc::Checksum changed;
  changed.update(data);
  CHECK(changed.value() != whole.value());
}

TEST_CASE("stream_copy copies every size and alignment exactly", "[ipc][copy]") {
  std::vector<std::byte> source(300'000), destination(300'000);
  ipc::fill_pattern(source, 9, 0);
  for (std::size_t size : {0, 1, 63, 64 * 1024, 64 * 1024 + 13, 299'000}) {
    for (std::size_t shift : {0, 1, 7, 15}) {
      std::fill(destination.begin(), destination.end(), std::byte{0});
      ipc::stream_copy(destination.data() + shift, source.data() + (shift * 3) % 16, size);
      CHECK(std::memcmp(destination.data() + shift, source.data() + (shift * 3) % 16, size) == 0);
      CHECK(destination[shift + size] == std::byte{0});
    }
  }
}
