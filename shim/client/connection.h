// The process's one connection to the broker, shared by every shim library in the process
// (libcudart, libcuda, libcublas, libnvidia-ml all link libgpubroker-client.so).
//
// Nothing happens when the library is loaded: the first call that needs the broker connects
// (thread-safe; concurrent first calls connect once). A process that never calls CUDA never
// connects, starts no thread and pays nothing at exit. After fork() the child starts without a
// connection and makes its own on first use; the parent's stays intact (the child closes its
// copy of the socket so that the broker still sees the parent's hang-up when it dies).
//
// If the broker cannot be reached, the failure is remembered for the life of the process (as the
// CUDA runtime remembers a failed initialization) and every later call fails at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpubroker/wire/segments.h"
#include "ipc/client_session.h"

namespace gpubroker::shim {

enum class ConnectionState : std::uint8_t {
  kConnected,
  kUnreachable,  // no broker answered (socket missing, refused, handshake failed or timed out)
  kLost,         // the broker died or closed the session
};

class Connection {
 public:
  // The connection, connecting first if needed; nullptr when the broker is unreachable (see
  // last_failure()). Fast after the first call: one atomic load and a pid comparison.
  static Connection* get();

  // Why get() returned nullptr, for a log line.
  static std::string last_failure();

  // The CUDA ABI (12 or 13) the process speaks, told to the broker at the handshake. Called by
  // the runtime shim's static constructor; records only.
  static void declare_abi(std::uint32_t abi);
  // The ABI declared so far: 0 until a runtime shim made its first call (libcuda reads it to know
  // that the runtime has made its primary contexts current).
  static std::uint32_t declared_abi();

  [[nodiscard]] ipc::ClientSession& session() { return *session_; }
  [[nodiscard]] const wire::DeviceTable& device_table() const { return *table_; }
  // Visible devices: index i of the process is broker ordinal visible()[i].
  [[nodiscard]] const std::vector<std::uint32_t>& visible() const { return visible_; }
  [[nodiscard]] const wire::DeviceRecord& device(std::uint32_t index) const {
    return table_->devices[visible_.at(index)];
  }

  // The calling thread's current device, a visible index (0 until set), shared by every shim of
  // the process as CUDA's current context is: libcudart's cudaSetDevice sets it, libcuda answers
  // its memory figures for it, and every request the thread makes names its broker ordinal
  // (wire::RequestHeader::device), so that the broker serves the call on that device. Any thread;
  // each sees its own.
  static int current_device();
  static void set_current_device(int index);  // the caller has checked index < visible().size()
  // The broker ordinal of the calling thread's current device (that of visible device 0 where the
  // index is out of range, 0 with no visible device at all).
  [[nodiscard]] std::uint32_t current_ordinal() const;
  [[nodiscard]] ConnectionState state() const;

 private:
  Connection() = default;

  std::unique_ptr<ipc::ClientSession> session_;
  const wire::DeviceTable* table_ = nullptr;
  std::vector<std::uint32_t> visible_;
};

}  // namespace gpubroker::shim
