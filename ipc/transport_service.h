// The transport's own request kinds (Null, Echo, the staging and host-arena checks, the scratch
// copies), served on the broker side. The broker hands these kinds here; the transport benchmark
// and the transport tests run this service alone in a server process.
#pragma once

#include "ipc/server_session.h"

namespace gpubroker::ipc {

// Which of the transport kinds a handler serves. kAll: every one (the transport's tests and its
// benchmark). kProduction: Null and Echo, which measure the rings and hold nothing. The others
// exist to test the pipes and the arena, and the scratch copies hold up to 256 MiB of broker
// memory per session, so a production broker takes them as a protocol violation of that session.
enum class TransportKinds { kAll, kProduction };

// Whether `kind` (a transport kind) is served under `kinds`.
bool serves(TransportKinds kinds, wire::TransportKind kind);

// A handler for the transport kinds, with its own per-session scratch buffer (the model of device
// memory for the scratch copies). Serves one session; create one per session.
RequestHandler make_transport_handler(TransportKinds kinds);

// A HandlerFactory that serves every session with all the transport kinds alone.
HandlerFactory transport_handlers();

}  // namespace gpubroker::ipc
