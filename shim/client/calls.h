// The shims' typed calls to the broker, one template per way of sending, each checked against the
// call table (gpubroker/calls/cuda_calls.h) at compile time: the payload must be the row's, a
// staged call must stage the row's way, only a row that may be posted can be, and the reply comes
// back as the row's reply type.
//
//   auto answer = shim::call<wire::RequestKind::kMemAlloc>(session, wire::MemAllocRequest{0, 0, bytes});
//   if (answer && answer.value().status == 0) use(answer.value().reply.pointer);
//
// Any thread; the ipc::ClientSession underneath is thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "shim/trace/recorder.h"

namespace gpubroker::shim {

template <wire::RequestKind Kind>
using PayloadOf = typename wire::Call<Kind>::Payload;
template <wire::RequestKind Kind>
using ReplyOf = typename wire::Call<Kind>::Reply;

// A completion with its reply read as the row's reply type (zeros where the broker sent less).
template <class Reply>
struct Answer {
  std::int32_t status = 0;
  Reply reply{};
};

namespace detail {

template <class Reply>
ipc::Result<Answer<Reply>> decode(ipc::Result<ipc::Completion> completion) {
  if (!completion) return completion.error();
  Answer<Reply> answer{completion.value().status, {}};
  if constexpr (!std::is_same_v<Reply, wire::NoReply>) {
    std::memcpy(&answer.reply, completion.value().result,
                std::min<std::size_t>(sizeof(Reply), completion.value().result_bytes));
  }
  return answer;
}

template <class T>
inline constexpr bool is_tail = false;
template <class Head, std::size_t Max>
inline constexpr bool is_tail<wire::Tail<Head, Max>> = true;

template <class Payload>
std::span<const std::byte> payload_bytes(const Payload& payload) {
  if constexpr (std::is_same_v<Payload, wire::NoPayload>) {
    return {};
  } else {
    return wire::bytes_of(payload);
  }
}


// The status a trace records for an answer: the broker's, or -1 where the transport failed.
template <class Reply>
std::int32_t traced_status(const ipc::Result<Answer<Reply>>& answer) {
  return answer ? answer.value().status : -1;
}
inline std::int32_t traced_status(const ipc::Result<void>& posted) { return posted ? 0 : -1; }

// Sends by `send` and, when tracing, records the request (its kind, the first words of its
// payload, its status and time) as a call answered by the broker. The first request of a traced
// entry point is folded into the entry point's own record (one record and two clock reads fewer
// for the common call that sends one request); a later one, or one sent outside any entry point,
// gets a record of its own.
template <wire::RequestKind Kind, class Send>
auto traced(std::span<const std::byte> payload, Send&& send) {
  if (!trace::enabled()) return send();
  const auto kind = static_cast<std::uint16_t>(Kind);
  if (trace::EntryScope::note_request(kind, payload.data(), payload.size())) return send();
  const std::uint64_t start = trace::now_ns();
  auto result = send();
  trace::record_call(wire::kind_name(kind), trace::Library::kRequest, trace::Where::kBroker, start, traced_status(result), kind,
                     payload.data(), payload.size());
  return result;
}

}  // namespace detail

// A synchronous call without staged bytes.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kNone)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload = {}) {
  const auto bytes = detail::payload_bytes(payload);
  return detail::traced<Kind>(bytes, [&] { return detail::decode<ReplyOf<Kind>>(session.call(Kind, bytes)); });
}

// A synchronous call whose staged bytes flow to the broker.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kToBroker)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload,
                                        std::span<const std::byte> staged) {
  const auto bytes = detail::payload_bytes(payload);
  return detail::traced<Kind>(bytes, [&] { return detail::decode<ReplyOf<Kind>>(session.call(Kind, bytes, ipc::StagedOut{staged})); });
}

// A synchronous call whose staged bytes flow back into `staged`.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kFromBroker)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload,
                                        std::span<std::byte> staged) {
  const auto bytes = detail::payload_bytes(payload);
  return detail::traced<Kind>(bytes, [&] { return detail::decode<ReplyOf<Kind>>(session.call(Kind, bytes, ipc::StagedIn{staged})); });
}

// An asynchronous request: posted, not waited for.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::posting == wire::Posting::kMayPost && wire::Call<Kind>::staging == wire::Staging::kNone &&
           !detail::is_tail<PayloadOf<Kind>>)
ipc::Result<void> post(ipc::ClientSession& session, const PayloadOf<Kind>& payload) {
  const auto bytes = detail::payload_bytes(payload);
  return detail::traced<Kind>(bytes, [&] { return session.post(Kind, bytes); });
}

// An asynchronous request of a Tail row (a launch and its parameter block): the head, then
// `tail`, in one payload. kInvalidArgument when `tail` does not fit the slot.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::posting == wire::Posting::kMayPost && detail::is_tail<PayloadOf<Kind>>)
ipc::Result<void> post(ipc::ClientSession& session, const typename PayloadOf<Kind>::HeadType& head,
                       std::span<const std::byte> tail) {
  constexpr std::size_t kMax = wire::PayloadBounds<PayloadOf<Kind>>::max;
  if (tail.size() > kMax - sizeof head) return ipc::IpcError{ipc::IpcErrc::kInvalidArgument, 0, 0};
  std::byte payload[kMax];
  std::memcpy(payload, &head, sizeof head);
  if (!tail.empty()) std::memcpy(payload + sizeof head, tail.data(), tail.size());
  const std::span<const std::byte> bytes(payload, sizeof head + tail.size());
  return detail::traced<Kind>(bytes, [&] { return session.post(Kind, bytes); });
}

}  // namespace gpubroker::shim
