// Errors of the ipc layer, returned as values.
//
// Every fallible ipc function returns Result<T>: a T or an IpcError that names what went wrong
// (IpcErrc) and keeps the errno of the system call that failed, if one did. The CUDA-facing layers
// map IpcErrc to the CUDA error their caller sees.
#pragma once

#include <boost/outcome/result.hpp>
#include <cstdint>
#include <string>

namespace gpubroker::ipc {

enum class IpcErrc : std::uint8_t {
  kSystem,              // a system call failed; IpcError::sys_errno says why
  kTimedOut,            // a bounded wait ran out with the peer still alive
  kPeerGone,            // the peer closed the socket or died
  kRefused,             // the broker refused the handshake (`detail`: refusal_detail)
  kProtocol,            // the peer sent something malformed
  kBadSegment,          // a segment failed its seal, size or header checks
  kSessionClosed,       // the broker closed this session (state word says why)
  kInvalidArgument,     // the caller passed something out of range
  kOutOfMemory,         // the host arena has no room
};

struct IpcError {
  IpcErrc code;
  int sys_errno = 0;    // errno of the failing system call, for kSystem
  std::int64_t detail = 0;  // a code-specific number: HandshakeStatus, ViolationCode, ...
};

const char* to_string(IpcErrc code);

// "connect: No such file or directory" style text for logs and messages.
std::string describe(const IpcError& error);

template <class T>
using Result = boost::outcome_v2::result<T, IpcError, boost::outcome_v2::policy::terminate>;

// A refusal's detail: the HandshakeStatus in the low byte, the BrokerLimit (wire/segments.h) of a
// kBrokerFull above it.
constexpr std::int64_t refusal_detail(std::int32_t status, std::uint32_t limit) {
  return static_cast<std::int64_t>(status) | static_cast<std::int64_t>(limit) << 8;
}

inline IpcError system_error(int err) { return IpcError{IpcErrc::kSystem, err, 0}; }

}  // namespace gpubroker::ipc
