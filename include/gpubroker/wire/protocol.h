// The wire protocol between a client (the shims) and the broker: request kinds, the table of
// their payload shapes, the request slot and the completion mailbox.
//
// Everything here is plain data that lives in shared memory or crosses the handshake socket:
// trivially copyable, standard layout, no pointers. Fields that two processes write sit on
// different 128-byte lines. Atomic access goes through std::atomic_ref at the point of use, and
// each such use names the operation it pairs with.
//
// Later issues extend RequestKind and kRequestShapes; the layout fingerprint (segments.h) changes
// with every edit of a shape, so a client and a broker built from different tables refuse each
// other at the handshake instead of misreading requests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gpubroker::wire {

inline constexpr std::uint32_t kProtocolVersion = 1;

// Bytes each side writes together: one line is 64 bytes, but the adjacent-line prefetcher moves
// pairs, so fields written by different processes are kept 128 bytes apart.
inline constexpr std::size_t kLineBytes = 128;

enum class RequestKind : std::uint16_t {
  kNull = 0,           // does nothing; measures the transport
  kEcho = 1,           // the inline payload comes back in the completion
  kStageChecksum = 2,  // staged bytes flow to the broker; the result is their count and checksum
  kStagePattern = 3,   // the broker stages `staged_bytes` of a seeded pattern back to the client
  kArenaChecksum = 4,  // checksum of a host-arena range, read in place by the broker
  kStageToScratch = 5,    // staged bytes are copied into a broker-side buffer (a copy's model)
  kStageFromScratch = 6,  // staged bytes are copied out of that buffer back to the client
  kCount,
};

// Which way a request's staged bytes flow (RequestHeader::staged_bytes).
enum class Staging : std::uint8_t { kNone, kToBroker, kFromBroker };

struct RequestShape {
  RequestKind kind;
  std::string_view name;
  std::uint16_t min_payload;  // inline payload bytes, inclusive bounds
  std::uint16_t max_payload;
  Staging staging;
};

// Transport-level result of a request. Later request kinds carry their API's own error codes in
// Completion::status; these values are the ones the transport itself produces.
enum class Status : std::int32_t {
  kOk = 0,
  kInvalidRequest = 1,  // a shape or range check failed; the session is also closed
  kTooLarge = 2,        // the result does not fit the mailbox
};

inline constexpr std::size_t kSlotBytes = 256;

struct RequestHeader {
  // Ring protocol word (submission_ring.h): ticket + 1 once the slot is filled, ticket +
  // capacity once the broker has consumed it.
  std::uint64_t sequence;
  std::uint16_t kind;  // RequestKind
  std::uint16_t flags;  // RequestFlags
  std::uint16_t mailbox;  // where a synchronous request's completion goes
  std::uint16_t payload_bytes;
  std::uint32_t mailbox_sequence;  // the value Mailbox::sequence takes when it completes
  std::uint32_t reserved;
  std::uint64_t staged_bytes;  // bytes moved through the staging pipe of the kind's direction
};

enum RequestFlags : std::uint16_t {
  kSynchronous = 1u << 0,  // the client waits in a mailbox for the completion
};

inline constexpr std::size_t kInlinePayloadBytes = kSlotBytes - sizeof(RequestHeader);

struct RequestSlot {
  RequestHeader header;
  std::byte payload[kInlinePayloadBytes];
};

inline constexpr std::size_t kMailboxResultBytes = 112;

// One per client thread that makes synchronous calls. The broker writes the first line and then
// `sequence`; the client writes `sleepers` on the second line before it sleeps on `sequence`.
struct Mailbox {
  alignas(kLineBytes) std::uint32_t sequence;  // futex word; release-stored after the result
  std::int32_t status;
  std::uint32_t result_bytes;
  std::uint32_t reserved;
  std::byte result[kMailboxResultBytes];
  alignas(kLineBytes) std::uint32_t sleepers;  // count of client threads asleep on `sequence`
};

inline constexpr std::array<RequestShape, static_cast<std::size_t>(RequestKind::kCount)>
    kRequestShapes{{
        {RequestKind::kNull, "Null", 0, 0, Staging::kNone},
        {RequestKind::kEcho, "Echo", 0, kMailboxResultBytes, Staging::kNone},
        {RequestKind::kStageChecksum, "StageChecksum", 0, 0, Staging::kToBroker},
        {RequestKind::kStagePattern, "StagePattern", 8, 8, Staging::kFromBroker},
        {RequestKind::kArenaChecksum, "ArenaChecksum", 16, 16, Staging::kNone},
        {RequestKind::kStageToScratch, "StageToScratch", 0, 0, Staging::kToBroker},
        {RequestKind::kStageFromScratch, "StageFromScratch", 0, 0, Staging::kFromBroker},
    }};

// The shape of a kind, or nullptr for a value outside the table.
constexpr const RequestShape* shape_of(std::uint16_t kind) {
  return kind < kRequestShapes.size() ? &kRequestShapes[kind] : nullptr;
}

// Result of kStageChecksum and kArenaChecksum.
struct ChecksumResult {
  std::uint64_t bytes;
  std::uint64_t checksum;
};

// Payload of kArenaChecksum.
struct ArenaRange {
  std::uint64_t offset;
  std::uint64_t bytes;
};

}  // namespace gpubroker::wire
