#include "tests/support/forked_server.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "ipc/transport_service.h"

namespace gpubroker::testing {

namespace {
std::atomic<bool> g_child_stop{false};
}

TempDir::TempDir() {
  char pattern[] = "/tmp/gpubroker-test-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  ::chmod(pattern, 0755);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

ForkedServer::ForkedServer(ipc::ListenerOptions options, ipc::HandlerFactory make_handler,
                           ipc::WaitPolicy policy)
    : socket_path_(options.socket_path) {
  auto listener = ipc::Listener::bind(std::move(options));
  if (!listener) throw std::runtime_error("bind failed: " + ipc::describe(listener.error()));
  ::chmod(socket_path_.c_str(), 0666);  // tests connect as other users too
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::close(pipe_fds[0]);
    ::signal(SIGTERM, [](int) { g_child_stop.store(true); });
    const int out = pipe_fds[1];
    if (!make_handler) make_handler = ipc::transport_handlers();
    ipc::run_sessions(listener.value(), make_handler, policy, g_child_stop,
                      [out](const ipc::SessionReport& report) {
                        [[maybe_unused]] ssize_t n = ::write(out, &report, sizeof(report));
                      });
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  reports_ = pipe_fds[0];
}

ForkedServer::~ForkedServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  if (reports_ >= 0) ::close(reports_);
}

std::optional<ipc::SessionReport> ForkedServer::next_report(std::chrono::milliseconds timeout) {
  pollfd p{reports_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  ipc::SessionReport report{};
  if (::read(reports_, &report, sizeof(report)) != static_cast<ssize_t>(sizeof(report))) return std::nullopt;
  return report;
}

bool ForkedServer::running() const {
  if (pid_ <= 0) return false;
  int status = 0;
  return ::waitpid(pid_, &status, WNOHANG) == 0;
}

void ForkedServer::kill_now() {
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ipc::ClientOptions client_options(const std::string& socket_path, const wire::Protocol& protocol) {
  ipc::ClientOptions options;
  options.socket_path = socket_path;
  options.protocol = protocol;
  options.program = "ipc-test";
  return options;
}

pid_t run_in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

int wait_for_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace gpubroker::testing
