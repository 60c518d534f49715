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

// Per-session state of the transport kinds: the scratch buffer that models device memory.
struct TransportScratch {
  static constexpr std::uint64_t kMaxBytes = 256ull << 20;  // larger transfers wrap around
  std::vector<std::byte> bytes;
};

Result<void> serve_transport_request(ServerSession& session, const wire::RequestSlot& request,
                                     TransportScratch& scratch) {
  const wire::RequestHeader& h = request.header;
  switch (static_cast<wire::RequestKind>(h.kind)) {
    case wire::RequestKind::kNull:
      session.complete(h, 0);
      break;
    case wire::RequestKind::kEcho:
      session.complete(h, 0, std::span(request.payload, h.payload_bytes));
      break;
    case wire::RequestKind::kStageChecksum: {
      Checksum sum;
      auto received = session.receive_staged(h.staged_bytes, [&](auto piece) { sum.update(piece); });
      if (!received) return as_session_error(received.error());
      session.complete(h, 0, bytes_of(wire::ChecksumResult{sum.bytes(), sum.value()}));
      break;
    }
    case wire::RequestKind::kStagePattern: {
      const auto seed = payload_as<std::uint64_t>(request);
      std::uint64_t offset = 0;
      auto sent = session.send_staged(h.staged_bytes, [&](std::span<std::byte> piece) {
        fill_pattern(piece, seed, offset);
        offset += piece.size();
      });
      if (!sent) return as_session_error(sent.error());
      session.complete(h, 0);
      break;
    }
    case wire::RequestKind::kArenaChecksum: {
      const auto range = payload_as<wire::ArenaRange>(request);
      auto bytes = session.arena_range(range.offset, range.bytes);
      if (!bytes) {
        return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kArenaRange)};
      }
      Checksum sum;
      sum.update(bytes.value());
      session.complete(h, 0, bytes_of(wire::ChecksumResult{sum.bytes(), sum.value()}));
      break;
    }
    case wire::RequestKind::kStageToScratch:
    case wire::RequestKind::kStageFromScratch: {
      const std::uint64_t size = std::min(h.staged_bytes, TransportScratch::kMaxBytes);
      if (scratch.bytes.size() < size) scratch.bytes.resize(size);
      std::uint64_t position = 0;
      // The scratch buffer is walked cyclically, like a device buffer reused by each copy.
      auto at = [&](std::size_t n) {
        std::byte* p = scratch.bytes.data() + position % std::max<std::uint64_t>(size, 1);
        position += n;
        return p;
      };
      Result<void> moved = boost::outcome_v2::success();
      if (static_cast<wire::RequestKind>(h.kind) == wire::RequestKind::kStageToScratch) {
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
      break;
    }
    default:  // not a transport kind: whoever serves the session should have taken it
      return IpcError{IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ViolationCode::kUnknownKind)};
  }
  return boost::outcome_v2::success();
}

}  // namespace

RequestHandler make_transport_handler() {
  return [scratch = std::make_shared<TransportScratch>()](ServerSession& session, const wire::RequestSlot& request) {
    return serve_transport_request(session, request, *scratch);
  };
}

HandlerFactory transport_handlers() {
  return [](const ServerSession&) { return make_transport_handler(); };
}

}  // namespace gpubroker::ipc
