// The whole wire protocol between a client (the shims) and the broker: every request kind, numbered
// from the two tables of calls (the transport's own of gpubroker/wire/transport.h, which keep their
// numbers, then cuda_calls.h's), and what each kind's row says about it, as a table the transport
// checks (kRequestShapes, handed to it as kProtocol) and as compile-time traits the broker's
// dispatch and the shims' typed calls use (Call<kind>).
//
// This is the CUDA half's module, gpubroker/calls: the broker, the shims and the tools include it;
// the transport (ipc/) may not, and sees only the Protocol it is handed. Its declarations keep the
// namespace of the one wire protocol they belong to, gpubroker::wire.
//
// Nothing here is written by hand per call: a row in a table is the whole declaration. kProtocol's
// fingerprint hashes every shape after the segments' layout, so a client and a broker built from
// different tables refuse each other at the handshake instead of misreading requests.
#pragma once

#include <iterator>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "gpubroker/calls/cuda_calls.h"
#include "gpubroker/wire/segments.h"
#include "gpubroker/wire/transport.h"

namespace gpubroker::wire {

#define GPUBROKER_ALL_CALLS(X) GPUBROKER_TRANSPORT_CALLS(X) GPUBROKER_CUDA_CALLS(X)

enum class RequestKind : std::uint16_t {
#define GPUBROKER_KIND(name, payload, reply, staging, posting, area, handler) k##name,
  GPUBROKER_ALL_CALLS(GPUBROKER_KIND)
#undef GPUBROKER_KIND
  kCount,
};

// The transport's kinds keep the numbers transport.h gives them.
#define GPUBROKER_SAME_NUMBER(name, payload, reply, staging, posting, area, handler) \
  static_assert(static_cast<std::uint16_t>(RequestKind::k##name) ==                   \
                    static_cast<std::uint16_t>(TransportKind::k##name),              \
                #name " is numbered as the transport numbers it");
GPUBROKER_TRANSPORT_CALLS(GPUBROKER_SAME_NUMBER)
#undef GPUBROKER_SAME_NUMBER

// A kind's name as the call table spells it ("MemAlloc"), or "?" for a value outside the table:
// for traces, logs and monitors.
inline constexpr const char* kKindNames[] = {
#define GPUBROKER_KIND_NAME(name, payload, reply, staging, posting, area, handler) #name,
    GPUBROKER_ALL_CALLS(GPUBROKER_KIND_NAME)
#undef GPUBROKER_KIND_NAME
};
constexpr const char* kind_name(std::uint32_t kind) {
  return kind < std::size(kKindNames) ? kKindNames[kind] : "?";
}

// The first kind a broker serves with the device; the ones before it are the transport's.
inline constexpr RequestKind kFirstDeviceKind = RequestKind::kMemAlloc;
static_assert(static_cast<std::uint16_t>(kFirstDeviceKind) == static_cast<std::uint16_t>(TransportKind::kCount));

inline constexpr auto kRequestShapes = GPUBROKER_SHAPE_TABLE(GPUBROKER_ALL_CALLS);
static_assert(kRequestShapes.size() == static_cast<std::size_t>(RequestKind::kCount));

// Every kind of both tables, for the transport: what the broker listens with and the shims connect
// with.
inline constexpr Protocol kProtocol{kRequestShapes, protocol_fingerprint(kRequestShapes)};
static_assert(kProtocol.indexed_by_kind());

// The shape of a kind, or nullptr for a value outside the table.
constexpr const RequestShape* shape_of(std::uint16_t kind) { return kProtocol.shape_of(kind); }

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
