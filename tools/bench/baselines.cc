#include "tools/bench/baselines.h"


#include <fmt/core.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

using ipc::monotonic_ns;

double memcpy_gbps(std::size_t bytes, int repeats) {
  std::vector<std::byte> source(bytes, std::byte{1}), destination(bytes, std::byte{2});
  std::memcpy(destination.data(), source.data(), bytes);
  const std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) {
    std::memcpy(destination.data(), source.data(), bytes);
    asm volatile("" : : "r"(destination.data()) : "memory");  // keep every copy
  }
  return static_cast<double>(bytes) * repeats / static_cast<double>(monotonic_ns() - t0);
}

Percentiles unix_socket_round_trip_ns(std::size_t count) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) != 0) fail("baseline", "socketpair failed");
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    char buffer[64];
    for (;;) {
      const ssize_t n = ::read(fds[1], buffer, sizeof buffer);
      if (n <= 0 || ::write(fds[1], buffer, static_cast<std::size_t>(n)) != n) ::_exit(0);
    }
  }
  ::close(fds[1]);
  char message[64] = {};
  std::vector<double> samples;
  samples.reserve(count);
  for (std::size_t i = 0; i < count + count / 10; ++i) {
    const std::int64_t t0 = monotonic_ns();
    if (::write(fds[0], message, sizeof message) != sizeof message || ::read(fds[0], message, sizeof message) <= 0) {
      fail("baseline", "the socket echo process stopped");
    }
    if (i >= count / 10) samples.push_back(static_cast<double>(monotonic_ns() - t0));
  }
  ::close(fds[0]);
  ::waitpid(child, nullptr, 0);
  return percentiles(samples);
}

namespace {

std::unique_ptr<ipc::ClientSession> open_session(const std::string& socket) {
  ipc::ClientOptions options;
  options.socket_path = socket;
  options.protocol = wire::kProtocol;  // gpu-broker's
  options.program = "gpubroker-bench";
  auto session = ipc::ClientSession::connect(options);
  if (!session) fail("baseline", "cannot open a transport session: " + ipc::describe(session.error()));
  return std::move(session.value());
}

}  // namespace

Percentiles ring_round_trip_ns(const std::string& socket, std::size_t count) {
  auto session = open_session(socket);
  std::vector<double> samples;
  samples.reserve(count);
  for (std::size_t i = 0; i < count + count / 10; ++i) {
    const std::int64_t t0 = monotonic_ns();
    if (!session->call(wire::RequestKind::kNull, {})) fail("baseline", "a kNull call failed");
    if (i >= count / 10) samples.push_back(static_cast<double>(monotonic_ns() - t0));
  }
  return percentiles(samples);
}

std::uint64_t broker_staged_bytes(const std::string& socket) {
  auto session = open_session(socket);
  auto totals = session->call(wire::RequestKind::kBrokerTotals, {});
  if (!totals) fail("baseline", "kBrokerTotals failed");
  return totals.value().result_as<wire::BrokerTotals>().staged_bytes;
}

std::uint64_t process_cpu_ns(pid_t pid) {
  // The process's CPU clock counts the threads that have ended too (a session's dispatcher ends
  // with its client); summing /proc/PID/task/*/schedstat did not, and went backwards.
  clockid_t clock = 0;
  timespec now{};
  if (::clock_getcpuclockid(pid, &clock) != 0 || ::clock_gettime(clock, &now) != 0) return 0;
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(now.tv_nsec);
}

}  // namespace gpubroker::bench
