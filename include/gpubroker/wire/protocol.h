// The wire protocol between a client (the shims) and the broker: every request kind, numbered
// from the two tables of calls (transport.h's, then cuda_calls.h's), and what each kind's row
// says about it, as a table the transport checks (kRequestShapes) and as compile-time traits
// the broker's dispatch and the shims' typed calls use (Call<kind>).
//
// Nothing here is written by hand per call: a row in a table is the whole declaration. The layout
// fingerprint (segments.h) hashes every shape, so a client and a broker built from different
// tables refuse each other at the handshake instead of misreading requests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "gpubroker/wire/cuda_calls.h"
#include "gpubroker/wire/transport.h"

namespace gpubroker::wire {

#define GPUBROKER_ALL_CALLS(X) GPUBROKER_TRANSPORT_CALLS(X) GPUBROKER_CUDA_CALLS(X)

enum class RequestKind : std::uint16_t {
#define GPUBROKER_KIND(name, payload, reply, staging, posting, area, handler) k##name,
  GPUBROKER_ALL_CALLS(GPUBROKER_KIND)
#undef GPUBROKER_KIND
  kCount,
};

// The first kind a broker serves with the device; the ones before it are the transport's.
inline constexpr RequestKind kFirstDeviceKind = RequestKind::kMemAlloc;

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

struct RequestShape {
  RequestKind kind;
  std::string_view name;
  std::uint16_t min_payload;  // inline payload bytes, inclusive bounds
  std::uint16_t max_payload;
  std::uint16_t reply_bytes;  // 0 for no reply or a raw one
  Staging staging;
  Posting posting;
};

inline constexpr std::array<RequestShape, static_cast<std::size_t>(RequestKind::kCount)> kRequestShapes{{
#define GPUBROKER_SHAPE(name, payload, reply, staging, posting, area, handler)                                \
  {RequestKind::k##name, #name, PayloadBounds<payload>::min, PayloadBounds<payload>::max, kReplyBytes<reply>, \
   Staging::staging, Posting::posting},
    GPUBROKER_ALL_CALLS(GPUBROKER_SHAPE)
#undef GPUBROKER_SHAPE
}};

#define GPUBROKER_CHECK_ROW(name, payload, reply, staging, posting, area, handler)                    \
  static_assert(PayloadBounds<payload>::max <= kInlinePayloadBytes, #name "'s payload exceeds a slot"); \
  static_assert(kReplyBytes<reply> <= kMailboxResultBytes, #name "'s reply exceeds a mailbox");
GPUBROKER_ALL_CALLS(GPUBROKER_CHECK_ROW)
#undef GPUBROKER_CHECK_ROW

// The shape of a kind, or nullptr for a value outside the table.
constexpr const RequestShape* shape_of(std::uint16_t kind) {
  return kind < kRequestShapes.size() ? &kRequestShapes[kind] : nullptr;
}

// A row as types: Call<RequestKind::kMemAlloc>::Payload is MemAllocRequest, and so on.
template <RequestKind Kind>
struct Call;
#define GPUBROKER_CALL_TRAITS(name, payload, reply, staging_, posting_, area, handler) \
  template <>                                                                          \
  struct Call<RequestKind::k##name> {                                                  \
    using Payload = payload;                                                           \
    using Reply = reply;                                                               \
    static constexpr Staging staging = Staging::staging_;                              \
    static constexpr Posting posting = Posting::posting_;                              \
  };
GPUBROKER_ALL_CALLS(GPUBROKER_CALL_TRAITS)
#undef GPUBROKER_CALL_TRAITS

}  // namespace gpubroker::wire
