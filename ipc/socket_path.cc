#include "ipc/socket_path.h"

#include <unistd.h>

#include <cstdlib>

namespace gpubroker::ipc {

std::string default_socket_path() {
  if (::geteuid() == 0) return "/run/gpu-broker/broker.sock";
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  return std::string(runtime != nullptr && *runtime != '\0' ? runtime : "/tmp") + "/gpu-broker.sock";
}

std::string client_socket_path() {
  const char* configured = std::getenv("GPUBROKER_SOCKET");
  return configured != nullptr && *configured != '\0' ? configured : default_socket_path();
}

}  // namespace gpubroker::ipc
