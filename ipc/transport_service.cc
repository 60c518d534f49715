#include "ipc/transport_service.h"

#include <cstring>
#include <memory>
#include <vector>

#include "ipc/checksum.h"
#include "ipc/log.h"
#include "ipc/stream_copy.h"

namespace gpubroker::ipc {

namespace {

using wire::bytes_of;
using wire::payload_as;

IpcError as_session_error(const IpcError& error) {
  if (error.code == IpcErrc::kProtocol) {
    return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kPipePosition)};
  }
  return error;
}

// The transport kinds of one session (rows of GPUBROKER_TRANSPORT_CALLS): each handler takes its
// row's payload and completes the request itself. The scratch buffer models device memory.
class TransportService {
 public:
  explicit TransportService(TransportKinds kinds) : kinds_(kinds) {}

  Result<void> serve(ServerSession& session, const wire::RequestSlot& request) {
    using namespace wire;  // the rows name wire types unqualified
    const auto kind = static_cast<TransportKind>(request.header.kind);
    if (!serves(kinds_, kind)) return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kUnknownKind)};
    switch (kind) {
#define GPUBROKER_TRANSPORT_DISPATCH(name, payload, reply, staging, posting, area, handler) \
  case TransportKind::k##name:                                                              \
    return handler(session, request.header, read<payload>(request));
      GPUBROKER_TRANSPORT_CALLS(GPUBROKER_TRANSPORT_DISPATCH)
#undef GPUBROKER_TRANSPORT_DISPATCH
      default:  // not a transport kind: whoever serves the session should have taken it
        return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kUnknownKind)};
    }
  }

 private:
  static constexpr std::uint64_t kMaxScratchBytes = 256ull << 20;  // larger transfers wrap around

  template <class Payload>
  static Payload read(const wire::RequestSlot& request) {
    if constexpr (std::is_same_v<Payload, wire::NoPayload>) {
      return {};
    } else if constexpr (std::is_same_v<Payload, wire::EchoPayload>) {
      return {{}, std::span(request.payload, request.header.payload_bytes)};
    } else {
      return payload_as<Payload>(request);
    }
  }

  Result<void> null(ServerSession& session, const wire::RequestHeader& h, wire::NoPayload) {
    session.complete(h, 0);
    return boost::outcome_v2::success();
  }
  Result<void> echo(ServerSession& session, const wire::RequestHeader& h, const wire::EchoPayload& payload) {
    session.complete(h, 0, payload.bytes);
    return boost::outcome_v2::success();
  }
  Result<void> stage_checksum(ServerSession& session, const wire::RequestHeader& h, wire::NoPayload) {
    Checksum sum;
    auto received = session.receive_staged(h.staged_bytes, [&](auto piece) { sum.update(piece); });
    if (!received) return as_session_error(received.error());
    session.complete(h, 0, bytes_of(wire::ChecksumResult{sum.bytes(), sum.value()}));
    return boost::outcome_v2::success();
  }
  Result<void> stage_pattern(ServerSession& session, const wire::RequestHeader& h, const wire::PatternRequest& p) {
    std::uint64_t offset = 0;
    auto sent = session.send_staged(h.staged_bytes, [&](std::span<std::byte> piece) {
      fill_pattern(piece, p.seed, offset);
      offset += piece.size();
    });
    if (!sent) return as_session_error(sent.error());
    session.complete(h, 0);
    return boost::outcome_v2::success();
  }
  Result<void> arena_checksum(ServerSession& session, const wire::RequestHeader& h, const wire::ArenaRange& range) {
    auto bytes = session.arena_range(range.offset, range.bytes);
    if (!bytes) return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kArenaRange)};
    Checksum sum;
    sum.update(bytes.value());
    session.complete(h, 0, bytes_of(wire::ChecksumResult{sum.bytes(), sum.value()}));
    return boost::outcome_v2::success();
  }
  Result<void> stage_to_scratch(ServerSession& session, const wire::RequestHeader& h, wire::NoPayload) {
    return through_scratch(session, h, true);
  }
  Result<void> stage_from_scratch(ServerSession& session, const wire::RequestHeader& h, wire::NoPayload) {
    return through_scratch(session, h, false);
  }
  Result<void> through_scratch(ServerSession& session, const wire::RequestHeader& h, bool to_scratch) {
    const std::uint64_t size = std::min(h.staged_bytes, kMaxScratchBytes);
    if (scratch_.size() < size) scratch_.resize(size);
    std::uint64_t position = 0;
    // The scratch buffer is walked cyclically, like a device buffer reused by each copy.
    auto at = [&](std::size_t n) {
      std::byte* p = scratch_.data() + position % std::max<std::uint64_t>(size, 1);
      position += n;
      return p;
    };
    Result<void> moved = boost::outcome_v2::success();
    if (to_scratch) {
      moved = session.receive_staged(h.staged_bytes, [&](std::span<const std::byte> piece) {
        stream_copy(at(piece.size()), piece.data(), piece.size());
      });
    } else {
      moved = session.send_staged(h.staged_bytes, [&](std::span<std::byte> piece) {
        std::memcpy(piece.data(), at(piece.size()), piece.size());
      });
    }
    if (!moved) return as_session_error(moved.error());
    session.complete(h, 0);
    return boost::outcome_v2::success();
  }

  TransportKinds kinds_;
  std::vector<std::byte> scratch_;
};

}  // namespace

bool serves(TransportKinds kinds, wire::TransportKind kind) {
  if (kind >= wire::TransportKind::kCount) return false;
  return kinds == TransportKinds::kAll || kind == wire::TransportKind::kNull || kind == wire::TransportKind::kEcho;
}

RequestHandler make_transport_handler(TransportKinds kinds) {
  return [service = std::make_shared<TransportService>(kinds)](ServerSession& session, const wire::RequestSlot& request) {
    return service->serve(session, request);
  };
}

HandlerFactory transport_handlers() {
  return [](const ServerSession&) { return make_transport_handler(TransportKinds::kAll); };
}

}  // namespace gpubroker::ipc
