// The transport half of the wire protocol: the request slot, the completion mailbox, and the
// request kinds of the transport itself (no CUDA in them). The CUDA half is cuda_calls.h; both
// tables of calls meet in protocol.h, which numbers every kind and derives its shape.
//
// Everything here is plain data that lives in shared memory or crosses the handshake socket:
// trivially copyable, standard layout, no pointers. Fields that two processes write sit on
// different 128-byte lines. Atomic access goes through std::atomic_ref at the point of use, and
// each such use names the operation it pairs with.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace gpubroker::wire {

inline constexpr std::uint32_t kProtocolVersion = 1;

// Bytes each side writes together: one line is 64 bytes, but the adjacent-line prefetcher moves
// pairs, so fields written by different processes are kept 128 bytes apart.
inline constexpr std::size_t kLineBytes = 128;

// Which way a request's staged bytes flow (RequestHeader::staged_bytes).
enum class Staging : std::uint8_t { kNone, kToBroker, kFromBroker };

// Whether a client may post a request without waiting for it (RequestFlags::kSynchronous clear).
// A call whose answer is a value, or whose CUDA semantics return only once it is done, is kCall.
enum class Posting : std::uint8_t { kCall, kMayPost };

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
  // The broker ordinal of the calling thread's current device (the runtime's cudaSetDevice, the
  // context of the driver API): device work the request does not place by a device of its own
  // payload runs there. The transport kinds ignore it.
  std::uint32_t device;
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


// Payload and reply markers of the call tables (X-macro rows, see protocol.h). They are not wire
// types: a row's payload is either a wire struct, NoPayload, or Tail<Head, Max> (a wire struct
// followed by up to Max - sizeof(Head) bytes of its own, such as a launch's parameter block); a
// row's reply is a wire struct, a scalar, NoReply, or RawReply (bytes the handler chooses).
struct NoPayload {};
template <class Head, std::size_t Max>
struct Tail {
  using HeadType = Head;
  Head head;
  std::span<const std::byte> bytes;  // the payload after `head`, in the broker's copy of the slot
};
struct NoReply {};
struct RawReply {
  std::span<const std::byte> bytes;
};

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

// kEcho's payload: any bytes up to what a mailbox can carry back.
using EchoPayload = Tail<NoPayload, kMailboxResultBytes>;

// Payload of kStagePattern: the seed of the pattern the broker stages back.
struct PatternRequest {
  std::uint64_t seed;
};

// The transport's own kinds, served by ipc/transport_service.cc: they measure and test the rings
// and pipes, and a broker serves them on every session. Columns as in cuda_calls.h.
#define GPUBROKER_TRANSPORT_CALLS(X)                                                                     \
  X(Null, NoPayload, NoReply, kNone, kMayPost, transport, null)          /* measures the transport */    \
  X(Echo, EchoPayload, RawReply, kNone, kMayPost, transport, echo)       /* the payload comes back */    \
  X(StageChecksum, NoPayload, ChecksumResult, kToBroker, kCall, transport, stage_checksum)               \
  X(StagePattern, PatternRequest, NoReply, kFromBroker, kCall, transport, stage_pattern)                 \
  X(ArenaChecksum, ArenaRange, ChecksumResult, kNone, kCall, transport, arena_checksum)                  \
  X(StageToScratch, NoPayload, NoReply, kToBroker, kCall, transport, stage_to_scratch)   /* a copy's model */ \
  X(StageFromScratch, NoPayload, NoReply, kFromBroker, kCall, transport, stage_from_scratch)

// The bytes of a payload or result struct, as they go into a slot or a mailbox.
template <class T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span<const T, 1>(&value, 1));
}

// A request's payload read as T, from the broker's private copy of the slot (bytes past the
// payload's length are the slot's, so a short payload reads as zeros, never out of bounds).
template <class T>
T payload_as(const RequestSlot& request) {
  static_assert(sizeof(T) <= kInlinePayloadBytes);
  T value{};
  std::memcpy(&value, request.payload, sizeof(T));
  return value;
}

}  // namespace gpubroker::wire
