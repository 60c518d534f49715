// The transport half of the wire protocol: the request slot, the completion mailbox, how a request
// kind's shape is described, and the request kinds of the transport itself (no CUDA in them), with
// their own numbering from 0. The CUDA half is the module gpubroker/calls (cuda_calls.h, and
// protocol.h, which numbers the CUDA kinds after these and builds the whole protocol's shape
// table); the transport never sees it, and is handed the table it checks requests against
// (wire::Protocol, segments.h) by whoever runs it.
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
#include <type_traits>

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
  std::uint16_t kind;  // the index of the kind's shape in the session's Protocol
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


// Payload and reply markers of the call tables (X-macro rows: this file's, and gpubroker/calls').
// They are not wire types: a row's payload is either a wire struct, NoPayload, or Tail<Head, Max>
// (a wire struct followed by up to Max - sizeof(Head) bytes of its own, such as a launch's
// parameter block); a row's reply is a wire struct, a scalar, NoReply, or RawReply (bytes the
// handler chooses).
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
// and pipes. A broker serves Null and Echo on every session; the rest only in the transport's own
// test and benchmark servers (ipc::TransportKinds).
//
// X(Name, Payload, Reply, Staging, Posting, area, handler): the request kind k<Name>; its inline
// payload; its reply (in the mailbox); which way staged bytes flow; whether a client may post it
// without waiting; and the handler that serves it, area().handler(...) (here the transport service's
// own). gpubroker/calls' rows have the same columns.
#define GPUBROKER_TRANSPORT_CALLS(X)                                                                     \
  X(Null, NoPayload, NoReply, kNone, kMayPost, transport, null)          /* measures the transport */    \
  X(Echo, EchoPayload, RawReply, kNone, kMayPost, transport, echo)       /* the payload comes back */    \
  X(StageChecksum, NoPayload, ChecksumResult, kToBroker, kCall, transport, stage_checksum)               \
  X(StagePattern, PatternRequest, NoReply, kFromBroker, kCall, transport, stage_pattern)                 \
  X(ArenaChecksum, ArenaRange, ChecksumResult, kNone, kCall, transport, arena_checksum)                  \
  X(StageToScratch, NoPayload, NoReply, kToBroker, kCall, transport, stage_to_scratch)   /* a copy's model */ \
  X(StageFromScratch, NoPayload, NoReply, kFromBroker, kCall, transport, stage_from_scratch)

// The transport's kinds, numbered in row order from 0. A protocol that adds kinds of its own
// (gpubroker/calls) numbers them after these, so that these keep their numbers in every protocol.
enum class TransportKind : std::uint16_t {
#define GPUBROKER_KIND(name, payload, reply, staging, posting, area, handler) k##name,
  GPUBROKER_TRANSPORT_CALLS(GPUBROKER_KIND)
#undef GPUBROKER_KIND
  kCount,
};

// A request kind as the transport carries it: the number in RequestHeader::kind, which indexes the
// session's shape table. Either half's enum of kinds (TransportKind, gpubroker/calls' RequestKind)
// converts to it, so that a caller names its kinds and the transport needs neither enum.
struct KindNumber {
  std::uint16_t value;

  template <class Kind>
    requires(std::is_enum_v<Kind> && !std::is_convertible_v<Kind, std::uint16_t> &&
             std::is_same_v<std::underlying_type_t<Kind>, std::uint16_t>)
  constexpr KindNumber(Kind kind) : value(static_cast<std::uint16_t>(kind)) {}  // implicit: a scoped kind enum
};

// Inline payload bytes a row's payload type allows, inclusive bounds.
template <class Payload>
struct PayloadBounds {
  static_assert(std::is_trivially_copyable_v<Payload> && std::is_standard_layout_v<Payload>,
                "a payload is a wire struct");
  static constexpr std::size_t min = sizeof(Payload), max = sizeof(Payload);
};
template <>
struct PayloadBounds<NoPayload> {
  static constexpr std::size_t min = 0, max = 0;
};
template <class Head, std::size_t Max>
struct PayloadBounds<Tail<Head, Max>> {
  static constexpr std::size_t min = PayloadBounds<Head>::min, max = Max;
};

// Mailbox bytes a row's reply takes; RawReply: up to all of them.
template <class Reply>
inline constexpr std::size_t kReplyBytes = sizeof(Reply);
template <>
inline constexpr std::size_t kReplyBytes<NoReply> = 0;
template <>
inline constexpr std::size_t kReplyBytes<RawReply> = 0;

// What the transport checks a request against before a handler sees it: one row of a call table
// as numbers. A protocol's shapes are indexed by kind.
struct RequestShape {
  std::uint16_t kind;
  std::string_view name;
  std::uint16_t min_payload;  // inline payload bytes, inclusive bounds
  std::uint16_t max_payload;
  std::uint16_t reply_bytes;  // 0 for no reply or a raw one
  Staging staging;
  Posting posting;

  constexpr bool operator==(const RequestShape&) const = default;
};

// The shape of a row with these payload and reply types; its kind is numbered by its table.
template <class Payload, class Reply>
constexpr RequestShape shape_of_row(std::string_view name, Staging staging, Posting posting) {
  static_assert(PayloadBounds<Payload>::max <= kInlinePayloadBytes, "a row's payload exceeds a slot");
  static_assert(kReplyBytes<Reply> <= kMailboxResultBytes, "a row's reply exceeds a mailbox");
  return {0, name, PayloadBounds<Payload>::min, PayloadBounds<Payload>::max, kReplyBytes<Reply>, staging, posting};
}

// Numbers the rows of a table in order, as the enum of its kinds numbers them.
template <std::size_t N>
constexpr std::array<RequestShape, N> numbered_rows(std::array<RequestShape, N> rows) {
  for (std::size_t i = 0; i < N; ++i) rows[i].kind = static_cast<std::uint16_t>(i);
  return rows;
}

// The shape table of a call table (the X-macro of its rows), row i the shape of kind i: the
// transport's kTransportShapes here, gpubroker/calls' kRequestShapes of both tables.
#define GPUBROKER_SHAPE_ROW(name, payload, reply, staging, posting, area, handler)                \
  ::gpubroker::wire::shape_of_row<payload, reply>(#name, ::gpubroker::wire::Staging::staging, \
                                                  ::gpubroker::wire::Posting::posting),
#define GPUBROKER_SHAPE_TABLE(calls) ::gpubroker::wire::numbered_rows(std::array{calls(GPUBROKER_SHAPE_ROW)})

inline constexpr auto kTransportShapes = GPUBROKER_SHAPE_TABLE(GPUBROKER_TRANSPORT_CALLS);
static_assert(kTransportShapes.size() == static_cast<std::size_t>(TransportKind::kCount));

// The bytes of a payload or result struct, as they go into a slot or a mailbox.
template <class T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span<const T, 1>(&value, 1));
}

// A request's payload read as T, from the broker's private copy of the slot: never out of bounds,
// and within the payload's length wherever validation bounded it by T (bytes past the length are
// whatever the client's slot or an earlier request left there).
template <class T>
T payload_as(const RequestSlot& request) {
  static_assert(sizeof(T) <= kInlinePayloadBytes);
  T value{};
  std::memcpy(&value, request.payload, sizeof(T));
  return value;
}

}  // namespace gpubroker::wire
