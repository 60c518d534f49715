// Where the broker listens: one rule for the daemon and every client library.
#pragma once

#include <string>

namespace gpubroker::ipc {

// /run/gpu-broker/broker.sock for root, $XDG_RUNTIME_DIR/gpu-broker.sock otherwise (/tmp when
// XDG_RUNTIME_DIR is unset).
std::string default_socket_path();

// What a client connects to: $GPUBROKER_SOCKET when set, else default_socket_path().
std::string client_socket_path();

}  // namespace gpubroker::ipc
