// The broker's Prometheus endpoint (--metrics-listen=HOST:PORT): the stats file, read through the
// same reader as broker-top, served as Prometheus text (exposition format 0.0.4) at /metrics.
//
// MetricsServer runs one thread of its own that accepts scrapes one at a time, each bounded by a
// 2-second socket timeout. It only reads the stats file (seqlocked copies), so a slow or hostile
// scraper delays other scrapes and never a session. Created and destroyed on the main thread.
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
  void serve();
  void answer(int connection);

  ipc::UniqueFd listener_;
  std::uint16_t port_ = 0;
  std::string stats_path_;
  std::string version_;
  std::optional<monitor::StatsFile> stats_;  // opened on the first scrape (the file comes later)
  std::atomic<bool> stop_{false};  // set by the destructor, polled by serve()
  std::thread thread_;
};

}  // namespace gpubroker::broker
