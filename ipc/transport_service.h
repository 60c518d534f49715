// The transport's own request kinds (Null, Echo, the staging and host-arena checks, the scratch
// copies), served on the broker side. The broker hands these kinds here; the transport benchmark
// and the transport tests run this service alone in a server process.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "ipc/server_session.h"

namespace gpubroker::ipc {

// Per-session state of the transport kinds: the scratch buffer that models device memory.
struct TransportScratch {
  static constexpr std::uint64_t kMaxBytes = 256ull << 20;  // larger transfers wrap around
  std::vector<std::byte> bytes;
};

// Handles one request of a transport kind; see RequestHandler for the meaning of errors.
Result<void> serve_transport_request(ServerSession& session, const wire::RequestSlot& request,
                                     TransportScratch& scratch);

// What happened to each session, for whoever runs the server (tests watch it).
struct SessionReport {
  std::uint64_t session_id;
  pid_t pid;
  SessionEnd end;
  ViolationCode violation;
  std::int64_t ended_ns;  // monotonic clock
};

// Accepts clients until `stop` is set, serving each on its own thread with the transport kinds.
// Returns once every session thread has finished.
void run_transport_server(Listener& listener, WaitPolicy policy, const std::atomic<bool>& stop,
                          const std::function<void(const SessionReport&)>& on_session_end);

}  // namespace gpubroker::ipc
