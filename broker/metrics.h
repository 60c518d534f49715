// The broker's Prometheus endpoint (--metrics-listen=HOST:PORT): the stats file, read through the
// same reader as broker-top, served as Prometheus text (exposition format 0.0.4) at /metrics.
//
// MetricsServer runs one thread of its own that serves up to kMaxScrapes scrapes at once on
// non-blocking sockets, each with a whole-request deadline (kScrapeDeadlineNs from accept to the
// last byte of the reply): a client that sends nothing, or a byte a second, delays no other
// scrape and is dropped at its deadline. It only reads the stats file (seqlocked copies), so no
// scraper ever delays a session. Created and destroyed on the main thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "ipc/result.h"
#include "ipc/system.h"
#include "monitor/stats_reader.h"

namespace gpubroker::broker {

struct ListenAddress {
  std::string host;  // an IPv4 or IPv6 literal, or "localhost"
  std::uint16_t port = 0;  // 0: any free port (MetricsServer::port() tells which)
};

// "127.0.0.1:9400", "[::1]:9400", "localhost:9400"; nullopt when malformed.
std::optional<ListenAddress> parse_listen_address(const std::string& text);

// The exposition text for one snapshot (the broker's version goes into gpubroker_build_info).
std::string prometheus_text(const monitor::Snapshot& snapshot, const char* version);

class MetricsServer {
 public:
  static ipc::Result<std::unique_ptr<MetricsServer>> start(const ListenAddress& address, std::string stats_path,
                                                           std::string version);
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();  // stops the thread (within about 200 ms)

  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  MetricsServer() = default;
  static constexpr std::size_t kMaxScrapes = 64;
  static constexpr std::int64_t kScrapeDeadlineNs = 2'000'000'000;

  void serve();
  // The whole HTTP response to a complete request head.
  std::string reply_to(const std::string& request);

  ipc::UniqueFd listener_;
  std::uint16_t port_ = 0;
  std::string stats_path_;
  std::string version_;
  std::optional<monitor::StatsFile> stats_;  // opened on the first scrape (the file comes later)
  std::atomic<bool> stop_{false};  // set by the destructor, polled by serve()
  std::thread thread_;
};

}  // namespace gpubroker::broker
