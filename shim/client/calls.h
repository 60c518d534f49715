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

}  // namespace detail

// A synchronous call without staged bytes.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kNone)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload = {}) {
  return detail::decode<ReplyOf<Kind>>(session.call(Kind, detail::payload_bytes(payload)));
}

// A synchronous call whose staged bytes flow to the broker.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kToBroker)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload,
                                        std::span<const std::byte> staged) {
  return detail::decode<ReplyOf<Kind>>(session.call(Kind, detail::payload_bytes(payload), ipc::StagedOut{staged}));
}

// A synchronous call whose staged bytes flow back into `staged`.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::staging == wire::Staging::kFromBroker)
ipc::Result<Answer<ReplyOf<Kind>>> call(ipc::ClientSession& session, const PayloadOf<Kind>& payload,
                                        std::span<std::byte> staged) {
  return detail::decode<ReplyOf<Kind>>(session.call(Kind, detail::payload_bytes(payload), ipc::StagedIn{staged}));
}

// An asynchronous request: posted, not waited for.
template <wire::RequestKind Kind>
  requires(wire::Call<Kind>::posting == wire::Posting::kMayPost && wire::Call<Kind>::staging == wire::Staging::kNone &&
           !detail::is_tail<PayloadOf<Kind>>)
ipc::Result<void> post(ipc::ClientSession& session, const PayloadOf<Kind>& payload) {
  return session.post(Kind, detail::payload_bytes(payload));
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
  return session.post(Kind, std::span<const std::byte>(payload, sizeof head + tail.size()));
}

}  // namespace gpubroker::shim
