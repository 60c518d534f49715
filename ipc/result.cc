#include "ipc/result.h"

#include <fmt/core.h>

#include <cstring>

namespace gpubroker::ipc {

const char* to_string(IpcErrc code) {
  switch (code) {
    case IpcErrc::kSystem: return "system call failed";
    case IpcErrc::kTimedOut: return "timed out";
    case IpcErrc::kPeerGone: return "peer gone";
    case IpcErrc::kRefused: return "refused by the broker";
    case IpcErrc::kProtocol: return "protocol violation";
    case IpcErrc::kBadSegment: return "shared-memory segment failed its checks";
    case IpcErrc::kSessionClosed: return "session closed by the broker";
    case IpcErrc::kInvalidArgument: return "invalid argument";
    case IpcErrc::kOutOfMemory: return "out of memory";
  }
  return "unknown error";
}

std::string describe(const IpcError& error) {
  std::string text = to_string(error.code);
  if (error.sys_errno != 0) text += fmt::format(": {}", std::strerror(error.sys_errno));
  if (error.detail != 0) text += fmt::format(" (detail {})", error.detail);
  return text;
}

}  // namespace gpubroker::ipc
