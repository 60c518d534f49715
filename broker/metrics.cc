#include "broker/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fmt/format.h>
#include <string_view>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

// A label value in the exposition format: backslash, quote and newline escaped; the rest valid
// UTF-8 (printable_utf8 drops control characters and invalid bytes that a client put in its name).
std::string label(std::string_view text) {
  std::string out;
  for (const char c : monitor::printable_utf8(text)) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

// Shortest text that reads back as the same double; integers below 2^53 come out exact.
std::string number(double value) { return std::isfinite(value) ? fmt::format("{}", value) : "NaN"; }

class Exposition {
 public:
  // Starts a metric family: its HELP and TYPE lines, once.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, const std::string& labels, double value) {
    text_ += labels.empty() ? fmt::format("{} {}\n", name, number(value))
                            : fmt::format("{}{{{}}} {}\n", name, labels, number(value));
  }
  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

std::string session_labels(const monitor::SessionSample& s) {
  return fmt::format("session=\"{}\",pid=\"{}\",program=\"{}\",abi=\"{}\"", s.session_id, s.pid, label(s.program), s.abi);
}

std::string device_labels(const monitor::DeviceSample& d) {
  return fmt::format("device=\"{}\",name=\"{}\"", d.index, label(d.name));
}

// A whole HTTP response; a HEAD request gets the head alone.
std::string response(std::string_view status, std::string_view content_type, std::string_view body, bool head) {
  std::string out = fmt::format("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                status, content_type, body.size());
  if (!head) out += body;
  return out;
}

bool head_complete(const std::string& request) {
  return request.find("\r\n\r\n") != std::string::npos || request.find("\n\n") != std::string::npos;
}

// The request head only; a scrape has no body. Anything past 8 KiB is not a scrape.
constexpr std::size_t kMaxRequestBytes = 8192;

}  // namespace

std::optional<ListenAddress> parse_listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) return std::nullopt;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    in6_addr v6{};
    if (::inet_pton(AF_INET6, host.c_str(), &v6) != 1) return std::nullopt;
  } else if (host != "localhost") {
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) != 1) return std::nullopt;
  }
  return ListenAddress{host, static_cast<std::uint16_t>(port)};
}

std::string prometheus_text(const monitor::Snapshot& snapshot, const char* version) {
  const monitor::View view = monitor::derive(nullptr, snapshot);
  Exposition out;
  out.family("gpubroker_build_info", "gauge", "The broker's version and driver (always 1).");
  out.sample("gpubroker_build_info",
             fmt::format("version=\"{}\",driver=\"{}\",pid=\"{}\"", label(version), snapshot.simulated ? "sim" : "cuda",
                         snapshot.broker_pid),
             1);
  out.family("gpubroker_start_time_seconds", "gauge", "When the broker started, in seconds since the epoch.");
  out.sample("gpubroker_start_time_seconds", "", static_cast<double>(snapshot.started_ns) / 1e9);
  out.family("gpubroker_heartbeat_age_seconds", "gauge", "Seconds since the broker last rewrote its stats heartbeat.");
  out.sample("gpubroker_heartbeat_age_seconds", "",
             static_cast<double>(snapshot.taken_realtime_ns - snapshot.heartbeat_ns) / 1e9);
  out.family("gpubroker_sessions", "gauge", "Sessions open now.");
  out.sample("gpubroker_sessions", "", view.totals.sessions);
  out.family("gpubroker_sessions_opened_total", "counter", "Sessions opened since the broker started.");
  out.sample("gpubroker_sessions_opened_total", "", static_cast<double>(snapshot.sessions_total));
  out.family("gpubroker_protocol_violations_total", "counter", "Sessions closed for breaking the protocol.");
  out.sample("gpubroker_protocol_violations_total", "", static_cast<double>(snapshot.violations_total));
  out.family("gpubroker_sessions_device_memory_bytes", "gauge", "Device memory held by all open sessions.");
  out.sample("gpubroker_sessions_device_memory_bytes", "", static_cast<double>(view.totals.device_bytes));
  out.family("gpubroker_sessions_pinned_memory_bytes", "gauge", "Pinned host memory held by all open sessions.");
  out.sample("gpubroker_sessions_pinned_memory_bytes", "", static_cast<double>(view.totals.pinned_bytes));

  out.family("gpubroker_device_memory_total_bytes", "gauge", "Device memory of each device.");
  for (const auto& d : view.devices) out.sample("gpubroker_device_memory_total_bytes", device_labels(d.sample), d.sample.total_bytes);
  out.family("gpubroker_device_memory_used_bytes", "gauge", "Device memory held through the broker on each device.");
  for (const auto& d : view.devices) out.sample("gpubroker_device_memory_used_bytes", device_labels(d.sample), d.sample.used_bytes);
  out.family("gpubroker_device_memory_free_bytes", "gauge", "Device memory not held through the broker.");
  for (const auto& d : view.devices) out.sample("gpubroker_device_memory_free_bytes", device_labels(d.sample), d.free_bytes);
  out.family("gpubroker_device_driver_memory_used_bytes", "gauge",
             "Device memory in use as the driver reports it (total - free): every context and process.");
  for (const auto& d : view.devices) {
    out.sample("gpubroker_device_driver_memory_used_bytes", device_labels(d.sample), d.sample.driver_used_bytes);
  }
  out.family("gpubroker_device_utilization_ratio", "gauge", "Device utilization (0..1), where the driver reports it.");
  for (const auto& d : view.devices) {
    if (d.sample.utilization_percent >= 0) {
      out.sample("gpubroker_device_utilization_ratio", device_labels(d.sample), d.sample.utilization_percent / 100.0);
    }
  }

  struct SessionFamily {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const monitor::SessionRow&);
    bool per_session_only = false;  // no meaning summed over the others
  };
  static constexpr SessionFamily families[] = {
      {"gpubroker_session_device_memory_bytes", "gauge", "Device memory the session holds.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.device_bytes); }},
      {"gpubroker_session_pinned_memory_bytes", "gauge", "Pinned host memory the session holds.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.pinned_bytes); }},
      {"gpubroker_session_calls_total", "counter", "Calls the broker handled for the session.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.calls); }},
      {"gpubroker_session_errors_total", "counter", "Calls of the session that failed.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.errors); }},
      {"gpubroker_session_bytes_to_device_total", "counter", "Bytes the session copied host to device.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.bytes_to_device); }},
      {"gpubroker_session_bytes_from_device_total", "counter", "Bytes the session copied device to host.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.bytes_from_device); }},
      {"gpubroker_session_start_time_seconds", "gauge", "When the session opened, in seconds since the epoch.",
       [](const monitor::SessionRow& r) { return static_cast<double>(r.sample.started_ns) / 1e9; }, true},
  };
  for (const SessionFamily& f : families) {
    out.family(f.name, f.type, f.help);
    for (const auto& row : view.sessions) out.sample(f.name, session_labels(row.sample), f.value(row));
    // The sessions without a slot of their own, summed, so that a sum over sessions is exact (a
    // start time has no sum).
    if (view.others && !f.per_session_only) {
      out.sample(f.name, "session=\"others\",pid=\"\",program=\"\",abi=\"\"", f.value(*view.others));
    }
  }
  // By request kind (the call table's names): what each runner asks of the broker. The sessions
  // without a slot are counted in the totals above only.
  out.family("gpubroker_session_calls_by_kind_total", "counter",
             "Calls the broker handled for the session, by request kind (the call table's name).");
  for (const auto& row : view.sessions) {
    for (std::uint32_t kind = 0; kind < wire::kStatsKinds; ++kind) {
      if (row.sample.calls_by_kind[kind] == 0) continue;
      out.sample("gpubroker_session_calls_by_kind_total",
                 session_labels(row.sample) + fmt::format(",kind=\"{}\"", wire::kind_name(kind)),
                 static_cast<double>(row.sample.calls_by_kind[kind]));
    }
  }
  out.family("gpubroker_other_sessions", "gauge",
             "Open sessions past the stats file's slots; they appear summed as session=\"others\".");
  out.sample("gpubroker_other_sessions", "", static_cast<double>(snapshot.other_sessions));
  // The broker's histogram has no sum, so it is published as the quantiles broker-top shows.
  out.family("gpubroker_session_call_latency_seconds", "gauge",
             "Broker handling time of the session's calls over its life, by quantile (from a power-of-two histogram).");
  for (const auto& row : view.sessions) {
    for (const auto& [quantile, value] : {std::pair{"0.5", row.latency_p50_ns}, std::pair{"0.99", row.latency_p99_ns}}) {
      if (value) {
        out.sample("gpubroker_session_call_latency_seconds",
                   session_labels(row.sample) + fmt::format(",quantile=\"{}\"", quantile), *value / 1e9);
      }
    }
  }
  return out.take();
}

ipc::Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const ListenAddress& address, std::string stats_path,
                                                                 std::string version) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return ipc::IpcError{ipc::IpcErrc::kInvalidArgument, EINVAL, 0};
  }
  int last_errno = EADDRNOTAVAIL;
  ipc::UniqueFd listener;
  for (addrinfo* a = found; a != nullptr && !listener.valid(); a = a->ai_next) {
    ipc::UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last_errno = errno;
      continue;
    }
    const int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 16) != 0) {
      last_errno = errno;
      continue;
    }
    listener = std::move(fd);
  }
  ::freeaddrinfo(found);
  if (!listener.valid()) return ipc::system_error(last_errno);

  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &length);
  auto server = std::unique_ptr<MetricsServer>(new MetricsServer());
  server->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  server->listener_ = std::move(listener);
  server->stats_path_ = std::move(stats_path);
  server->version_ = std::move(version);
  server->thread_ = std::thread([s = server.get()] { s->serve(); });
  return server;
}

MetricsServer::~MetricsServer() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

void MetricsServer::serve() {
  // One scrape: its request as it arrives, then its reply as the client takes it, all by a
  // deadline. Sockets are non-blocking, so no client holds this thread: a silent or slow one
  // only keeps its own entry until its deadline.
  struct Scrape {
    ipc::UniqueFd fd;
    std::int64_t deadline_ns;
    std::string request;
    std::string reply;  // empty while the request is still arriving
    std::size_t sent = 0;
  };
  std::vector<Scrape> scrapes;
  std::vector<pollfd> polled;
  while (!stop_.load(std::memory_order_relaxed)) {
    std::int64_t now = ipc::monotonic_ns();
    int wait_ms = 200;  // how often stop_ is looked at
    polled.assign(1, pollfd{listener_.get(), POLLIN, 0});
    for (const Scrape& s : scrapes) {
      polled.push_back(pollfd{s.fd.get(), static_cast<short>(s.reply.empty() ? POLLIN : POLLOUT), 0});
      wait_ms = std::min<std::int64_t>(wait_ms, std::max<std::int64_t>(0, (s.deadline_ns - now) / 1'000'000 + 1));
    }
    if (::poll(polled.data(), polled.size(), wait_ms) < 0) continue;
    now = ipc::monotonic_ns();
    for (std::size_t i = 0; i < scrapes.size(); ++i) {
      Scrape& s = scrapes[i];
      if (polled[i + 1].revents == 0) continue;
      if (s.reply.empty()) {
        char buffer[2048];
        const ssize_t got = ::recv(s.fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          s.deadline_ns = 0;  // the client left: dropped below
          continue;
        }
        if (got > 0) s.request.append(buffer, static_cast<std::size_t>(got));
        if (s.request.size() > kMaxRequestBytes) {
          s.reply = response("431 Request Header Fields Too Large", "text/plain", "", false);
        } else if (head_complete(s.request)) {
          s.reply = reply_to(s.request);
        }
      }
      if (!s.reply.empty()) {
        const ssize_t sent = ::send(s.fd.get(), s.reply.data() + s.sent, s.reply.size() - s.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0) s.sent += static_cast<std::size_t>(sent);
        if ((sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || s.sent == s.reply.size()) {
          s.deadline_ns = 0;  // answered, or the client is gone
        }
      }
    }
    std::erase_if(scrapes, [&](const Scrape& s) { return s.deadline_ns <= now; });
    if ((polled[0].revents & POLLIN) != 0) {
      ipc::UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      // Past kMaxScrapes at once the newcomer is closed at once: the ones in progress keep their turn.
      if (connection.valid() && scrapes.size() < kMaxScrapes) {
        scrapes.push_back(Scrape{std::move(connection), now + kScrapeDeadlineNs, {}, {}, 0});
      }
    }
  }
}

std::string MetricsServer::reply_to(const std::string& request) {
  const std::string line = request.substr(0, request.find_first_of("\r\n"));
  const auto first_space = line.find(' ');
  const auto second_space = line.find(' ', first_space + 1);
  if (first_space == std::string::npos || second_space == std::string::npos) {
    return response("400 Bad Request", "text/plain", "bad request\n", false);
  }
  const std::string method = line.substr(0, first_space);
  std::string target = line.substr(first_space + 1, second_space - first_space - 1);
  target = target.substr(0, target.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) return response("405 Method Not Allowed", "text/plain", "GET only\n", false);
  if (target == "/") return response("200 OK", "text/plain; charset=utf-8", "gpu-broker: metrics at /metrics\n", head);
  if (target != "/metrics") return response("404 Not Found", "text/plain", "not found; try /metrics\n", head);

  if (!stats_) {
    auto opened = monitor::StatsFile::open(stats_path_);
    if (!opened) return response("503 Service Unavailable", "text/plain", opened.error().message + "\n", head);
    stats_.emplace(std::move(opened.value()));
  }
  return response("200 OK", "text/plain; version=0.0.4; charset=utf-8", prometheus_text(stats_->read(), version_.c_str()),
                  head);
}

}  // namespace gpubroker::broker
