// gpubroker-bench ipc: the shared-memory transport against the alternatives it replaces.
//
// Client and server run in separate processes (the servers are forked children). Measured in one
// run: round trips of a 64-byte echo through the rings, a Unix seqpacket socket and TCP loopback;
// one-way rate of small asynchronous messages from one thread; bulk throughput through the
// staging area both ways against a single-thread memcpy of the same size.
#include <fmt/core.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "ipc/checksum.h"
#include "ipc/client_session.h"
#include "ipc/server_session.h"
#include "ipc/transport_service.h"
#include "tools/bench/report.h"

namespace gpubroker::bench {

namespace {

using ipc::monotonic_ns;
constexpr std::size_t kMessageBytes = 64;

struct Settings {
  bool json = false;
  std::size_t round_trips = 200'000;
  std::size_t socket_round_trips = 50'000;
  std::size_t async_messages = 2'000'000;
  std::size_t bulk_bytes = 256ull << 20;
  int bulk_repeats = 4;
  int rate_runs = 5;
};

std::atomic<bool> g_stop{false};

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "gpubroker-bench ipc: {}\n", what);
  std::exit(1);
}

// Runs `serve` in a forked child that exits when sent SIGTERM; returns its pid.
template <class Serve>
pid_t fork_server(Serve&& serve) {
  const pid_t pid = ::fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    ::signal(SIGTERM, [](int) { g_stop.store(true); });
    serve();
    ::_exit(0);
  }
  return pid;
}

void stop_server(pid_t pid) {
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) die("socket write failed");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// Echo loop for the socket baselines: read a message, send it back, until the peer closes.
void echo_until_closed(int fd) {
  char buffer[kMessageBytes];
  while (read_all(fd, buffer, sizeof(buffer))) write_all(fd, buffer, sizeof(buffer));
}

Percentiles socket_round_trips(int fd, std::size_t count) {
  char message[kMessageBytes] = {1};
  std::vector<double> samples;
  samples.reserve(count);
  for (std::size_t i = 0; i < count + count / 10; ++i) {
    const std::int64_t t0 = monotonic_ns();
    write_all(fd, message, sizeof(message));
    if (!read_all(fd, message, sizeof(message))) die("echo server went away");
    if (i >= count / 10) samples.push_back(static_cast<double>(monotonic_ns() - t0));
  }
  return percentiles(samples);
}

Percentiles unix_round_trips(std::size_t count) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) die("socketpair failed");
  const pid_t server = fork_server([&] {
    ::close(pair[0]);
    echo_until_closed(pair[1]);
  });
  ::close(pair[1]);
  Percentiles p = socket_round_trips(pair[0], count);
  ::close(pair[0]);
  ::waitpid(server, nullptr, 0);
  return p;
}

Percentiles tcp_round_trips(std::size_t count) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    die("tcp listen on loopback failed");
  }
  const int one = 1;
  const pid_t server = fork_server([&] {
    int fd = ::accept(listener, nullptr, nullptr);
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    echo_until_closed(fd);
  });
  ::close(listener);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) die("tcp connect failed");
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Percentiles p = socket_round_trips(fd, count);
  ::close(fd);
  ::waitpid(server, nullptr, 0);
  return p;
}

Percentiles ring_round_trips(ipc::ClientSession& session, std::size_t count) {
  std::byte message[kMessageBytes] = {std::byte{1}};
  std::vector<double> samples;
  samples.reserve(count);
  for (std::size_t i = 0; i < count + count / 10; ++i) {
    const std::int64_t t0 = monotonic_ns();
    auto reply = session.call(wire::TransportKind::kEcho, message);
    if (!reply || reply.value().result_bytes != kMessageBytes) die("echo through the rings failed");
    if (i >= count / 10) samples.push_back(static_cast<double>(monotonic_ns() - t0));
  }
  return percentiles(samples);
}

double async_rate(ipc::ClientSession& session, std::size_t messages) {
  const std::int64_t t0 = monotonic_ns();
  for (std::size_t i = 0; i < messages; ++i) {
    if (!session.post(wire::TransportKind::kNull, {})) die("post failed");
  }
  if (!session.call(wire::TransportKind::kNull, {})) die("call failed");  // all executed
  return static_cast<double>(messages + 1) * 1e9 / static_cast<double>(monotonic_ns() - t0);
}

double gbps(std::uint64_t bytes, std::int64_t ns) { return static_cast<double>(bytes) / static_cast<double>(ns); }

// Returns {to broker, from broker} in GB/s.
std::pair<double, double> staging_throughput(ipc::ClientSession& session, std::vector<std::byte>& buffer,
                                             int repeats) {
  auto to = [&] {
    auto r = session.call(wire::TransportKind::kStageToScratch, {}, ipc::StagedOut{buffer});
    if (!r) die("staging to the broker failed: " + ipc::describe(r.error()));
  };
  auto from = [&] {
    auto r = session.call(wire::TransportKind::kStageFromScratch, {}, ipc::StagedIn{buffer});
    if (!r) die("staging from the broker failed: " + ipc::describe(r.error()));
  };
  to();  // the broker's scratch buffer is faulted in by the first transfer
  from();
  std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) to();
  const double to_gbps = gbps(buffer.size() * repeats, monotonic_ns() - t0);
  t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) from();
  return {to_gbps, gbps(buffer.size() * repeats, monotonic_ns() - t0)};
}

double memcpy_throughput(std::vector<std::byte>& source, int repeats) {
  std::vector<std::byte> destination(source.size(), std::byte{1});
  std::memcpy(destination.data(), source.data(), source.size());
  const std::int64_t t0 = monotonic_ns();
  for (int i = 0; i < repeats; ++i) std::memcpy(destination.data(), source.data(), source.size());
  const double result = gbps(source.size() * repeats, monotonic_ns() - t0);
  if (destination[source.size() / 2] != source[source.size() / 2]) die("memcpy baseline miscopied");
  return result;
}

}  // namespace

int run_ipc_bench(int argc, char** argv) {
  Settings s;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") {
      s.json = true;
    } else if (arg == "--quick") {
      s.round_trips = 20'000;
      s.socket_round_trips = 5'000;
      s.async_messages = 200'000;
      s.bulk_bytes = 32ull << 20;
      s.bulk_repeats = 2;
      s.rate_runs = 3;
    } else {
      die(fmt::format("unknown option '{}'", arg));
    }
  }

  const std::string directory = fmt::format("/tmp/gpubroker-bench-{}", ::getpid());
  ::mkdir(directory.c_str(), 0700);
  const std::string socket_path = directory + "/ipc.sock";
  const ipc::WaitPolicy policy = ipc::WaitPolicy::of(ipc::WaitMode::kAdaptive);

  ipc::ListenerOptions listener_options;
  listener_options.socket_path = socket_path;
  auto listener = ipc::Listener::bind(listener_options);
  if (!listener) die("cannot listen on " + socket_path + ": " + ipc::describe(listener.error()));
  const pid_t server = fork_server([&] { ipc::run_sessions(listener.value(), ipc::transport_handlers(), policy, g_stop, nullptr); });
  {
    auto closed = std::move(listener.value());  // the parent keeps no copy of the listening socket
  }

  Report report;
  Percentiles ring, uds, tcp;
  double async = 0, to_broker = 0, from_broker = 0, baseline = 0;
  {
    ipc::ClientOptions client_options;
    client_options.socket_path = socket_path;
    client_options.program = "gpubroker-bench";
    client_options.wait = policy;
    auto session = ipc::ClientSession::connect(client_options);
    if (!session) die("cannot connect to the transport server: " + ipc::describe(session.error()));
    ring = ring_round_trips(*session.value(), s.round_trips);
    std::vector<double> rates;
    for (int i = 0; i < s.rate_runs; ++i) rates.push_back(async_rate(*session.value(), s.async_messages));
    async = median(rates);
    std::vector<std::byte> buffer(s.bulk_bytes);
    ipc::fill_pattern(buffer, 7, 0);
    std::tie(to_broker, from_broker) = staging_throughput(*session.value(), buffer, s.bulk_repeats);
    baseline = memcpy_throughput(buffer, s.bulk_repeats);
  }
  stop_server(server);
  ::unlink(socket_path.c_str());
  ::rmdir(directory.c_str());
  uds = unix_round_trips(s.socket_round_trips);
  tcp = tcp_round_trips(s.socket_round_trips);

  report.latency("ring_rtt_ns", ring);
  report.latency("uds_rtt_ns", uds);
  report.latency("tcp_rtt_ns", tcp);
  report.number("async_msgs_per_s", async);
  report.number("staging_to_broker_gbps", to_broker);
  report.number("staging_from_broker_gbps", from_broker);
  report.number("memcpy_gbps", baseline);
  report.number("uds_over_ring_p50", uds.p50 / ring.p50);
  report.number("tcp_over_ring_p50", tcp.p50 / ring.p50);
  report.number("staging_to_broker_over_memcpy", to_broker / baseline);
  report.number("staging_from_broker_over_memcpy", from_broker / baseline);

  if (s.json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench ipc on {}\n", machine_name());
  fmt::print("{} B echo round trip     {:>10} {:>10} {:>10}   {:>8}\n", kMessageBytes, "p50 ns", "p99 ns",
             "p99.9 ns", "p50/ring");
  auto row = [&](const char* name, const Percentiles& p) {
    fmt::print("  {:<23}{:>10.0f} {:>10.0f} {:>10.0f}   {:>7.1f}x\n", name, p.p50, p.p99, p.p999, p.p50 / ring.p50);
  };
  row("shared-memory rings", ring);
  row("unix seqpacket socket", uds);
  row("tcp loopback", tcp);
  fmt::print("async null messages, one thread: {:.2f} M/s\n", async / 1e6);
  fmt::print("staging, {} MiB x {}:  to broker {:.2f} GB/s ({:.2f}x memcpy), from broker {:.2f} GB/s ({:.2f}x memcpy)\n",
             s.bulk_bytes >> 20, s.bulk_repeats, to_broker, to_broker / baseline, from_broker,
             from_broker / baseline);
  fmt::print("memcpy baseline, one thread: {:.2f} GB/s\n", baseline);
  return 0;
}

}  // namespace gpubroker::bench
