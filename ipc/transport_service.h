// The transport's own request kinds (Null, Echo, the staging and host-arena checks, the scratch
// copies), served on the broker side. The broker hands these kinds here; the transport benchmark
// and the transport tests run this service alone in a server process.
#pragma once

#include "ipc/server_session.h"

namespace gpubroker::ipc {

// A handler for the transport kinds, with its own per-session scratch buffer (the model of device
// memory for the scratch copies). Serves one session; create one per session.
RequestHandler make_transport_handler();

// A HandlerFactory that serves every session with the transport kinds alone.
HandlerFactory transport_handlers();

}  // namespace gpubroker::ipc
