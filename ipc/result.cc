#include "ipc/result.h"

#include <fmt/core.h>

#include <cstring>

#include "gpubroker/wire/segments.h"

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

namespace {

const char* to_string(wire::HandshakeStatus status) {
  switch (status) {
    case wire::HandshakeStatus::kAccepted: return "accepted";
    case wire::HandshakeStatus::kVersionMismatch: return "protocol version mismatch";
    case wire::HandshakeStatus::kFingerprintMismatch: return "protocol fingerprint mismatch (a different build)";
    case wire::HandshakeStatus::kCredentialsRefused: return "this user is not allowed (--allow-uid, --allow-gid)";
    case wire::HandshakeStatus::kMalformed: return "malformed hello";
    case wire::HandshakeStatus::kBrokerFull: return "broker full";
    case wire::HandshakeStatus::kBrokerError: return "broker error (see its log)";
  }
  return "unknown status";
}

// What was full, and the option that raises it.
const char* to_string(wire::BrokerLimit limit) {
  switch (limit) {
    case wire::BrokerLimit::kNone: return "no limit named";
    case wire::BrokerLimit::kSessions: return "sessions in total (raise --max-sessions)";
    case wire::BrokerLimit::kSessionsPerUser: return "sessions of this user (raise --max-sessions-per-user)";
    case wire::BrokerLimit::kHandshakes: return "handshakes in progress (raise --max-handshakes)";
    case wire::BrokerLimit::kHandshakesPerUser:
      return "handshakes in progress of this user (raise --max-handshakes-per-user)";
    case wire::BrokerLimit::kDescriptors: return "file descriptors (raise the broker's LimitNOFILE)";
  }
  return "unknown limit";
}

}  // namespace

std::string describe(const IpcError& error) {
  std::string text = to_string(error.code);
  if (error.code == IpcErrc::kRefused) {
    const auto status = static_cast<wire::HandshakeStatus>(error.detail & 0xff);
    text += fmt::format(": {}", to_string(status));
    if (status == wire::HandshakeStatus::kBrokerFull) {
      text += fmt::format(": {}", to_string(static_cast<wire::BrokerLimit>(error.detail >> 8)));
    }
    return text;
  }
  if (error.sys_errno != 0) text += fmt::format(": {}", std::strerror(error.sys_errno));
  if (error.detail != 0) text += fmt::format(" (detail {})", error.detail);
  return text;
}

}  // namespace gpubroker::ipc
