// Test support: a transport server in a forked child process, and helpers to run clients in
// children of their own. The child reports each session's end through a pipe, so tests can assert
// what the server saw (violations, departures, and when).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "ipc/client_session.h"
#include "ipc/server_session.h"

namespace gpubroker::testing {

// A private directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ForkedServer {
 public:
  // Binds in the calling process, then serves in a child until destroyed. The default handler
  // serves the transport kinds (the protocol `options` has by default).
  explicit ForkedServer(ipc::ListenerOptions options, ipc::HandlerFactory make_handler = nullptr,
                        ipc::WaitPolicy policy = ipc::WaitPolicy::of(ipc::WaitMode::kAdaptive));
  ForkedServer(const ForkedServer&) = delete;
  ForkedServer& operator=(const ForkedServer&) = delete;
  ~ForkedServer();  // SIGTERM, then waits for the child

  // The next session-end report, if one arrives within `timeout`.
  std::optional<ipc::SessionReport> next_report(std::chrono::milliseconds timeout);
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool running() const;
  void kill_now();  // SIGKILL, and reap
  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }

 private:
  pid_t pid_ = -1;
  int reports_ = -1;
  std::string socket_path_;
};

// Client options for a test client at `socket_path`: of a ForkedServer serving the transport's own
// kinds by default; of a gpu-broker with `protocol` wire::kProtocol (gpubroker/calls), as the
// shims connect.
ipc::ClientOptions client_options(const std::string& socket_path,
                                  const wire::Protocol& protocol = wire::kTransportProtocol);

// Runs `body` in a forked child; its return value is the child's exit status.
pid_t run_in_child(const std::function<int()>& body);
// Waits for a child; returns its exit status, or 128 + signal if it was killed.
int wait_for_child(pid_t pid);

}  // namespace gpubroker::testing
