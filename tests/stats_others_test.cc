// Every session is counted by the monitors, however many there are: 300 real client processes,
// each holding a different small amount of device memory, against a sim broker whose stats file
// has 256 session slots. The sessions past the slots are summed in the "others" row, so the
// totals that broker-top, its JSON and the /metrics text show equal the sum the clients allocated; when
// the clients leave, the totals return to zero (the others' memory included).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <sstream>
#include <fmt/format.h>
#include <optional>
#include <string>
#include <vector>

#include "broker/metrics.h"
#include "gpubroker/wire/stats.h"
#include "monitor/stats_reader.h"
#include "tests/support/broker_process.h"
#include "tests/support/eventually.h"
#include "tests/support/shim_child.h"

using namespace gpubroker;

extern "C" int cudaMalloc(void**, std::size_t);

namespace {

constexpr int kClients = 300;
constexpr std::size_t kUnit = 64 << 10;

std::size_t bytes_of(int client) { return kUnit * (1 + client % 5); }

}  // namespace

TEST_CASE("sessions past the stats slots are counted in 'others' with exact totals", "[stats][ops]") {
  static_assert(kClients > static_cast<int>(wire::kStatsSessionSlots));
  testing::TempDir dir;
  // More sessions of one user than the broker takes by default (--max-sessions-per-user=256).
  testing::BrokerProcess broker(dir, {.arguments = {"--max-sessions-per-user=512"}, .environment = {}});
  int ready[2], release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  std::vector<pid_t> children;
  std::uint64_t expected_bytes = 0;
  for (int i = 0; i < kClients; ++i) {
    const pid_t child = testing::start_child(broker, [&, i] {
      ::close(release[1]);  // the parent's end: EOF reaches this child once the parent closes it
      void* pointer = nullptr;
      EXPECT(cudaMalloc(&pointer, bytes_of(i)) == 0, "client %d allocates", i);
      char byte = 1;
      EXPECT(::write(ready[1], &byte, 1) == 1, "client %d reports", i);
      while (::read(release[0], &byte, 1) > 0) {
      }
    });
    REQUIRE(child > 0);
    children.push_back(child);
    expected_bytes += bytes_of(i);
  }
  ::close(release[0]);
  ::close(ready[1]);
  int reported = 0;
  char byte = 0;
  while (reported < kClients && ::read(ready[0], &byte, 1) == 1) ++reported;
  ::close(ready[0]);
  CHECK(reported == kClients);

  auto stats = monitor::StatsFile::open(broker.socket_path() + ".stats");
  REQUIRE(stats);
  std::optional<monitor::View> view;
  const auto counted = testing::poll_until([&] {
    view = monitor::derive(nullptr, stats.value().read());
    return view->totals.sessions == kClients && view->totals.device_bytes == expected_bytes;
  });
  INFO("sessions " << view->totals.sessions << ", device bytes " << view->totals.device_bytes << " of "
                   << expected_bytes);
  CHECK(counted);
  CHECK(view->sessions.size() == wire::kStatsSessionSlots);
  REQUIRE(view->others.has_value());
  CHECK(view->snapshot.other_sessions == kClients - wire::kStatsSessionSlots);
  CHECK(view->others->sample.device_bytes > 0);
  CHECK(view->others->sample.calls > 0);
  const std::string json = monitor::to_json(*view, broker.socket_path());
  CHECK(json.find(fmt::format("\"totals\":{{\"sessions\":{},\"device_bytes_used\":{},", kClients, expected_bytes)) !=
        std::string::npos);

  // /metrics: the per-session series, "others" included, sum to the same bytes.
  std::istringstream exposition(broker::prometheus_text(view->snapshot, "test"));
  std::uint64_t metrics_bytes = 0;
  int metrics_rows = 0;
  for (std::string line; std::getline(exposition, line);) {
    if (line.rfind("gpubroker_session_device_memory_bytes{", 0) != 0) continue;
    metrics_bytes += std::stoull(line.substr(line.rfind(' ') + 1));
    ++metrics_rows;
    if (line.find("session=\"others\"") != std::string::npos) {
      CHECK(std::stoull(line.substr(line.rfind(' ') + 1)) == view->others->sample.device_bytes);
    }
  }
  CHECK(metrics_bytes == expected_bytes);
  CHECK(metrics_rows == static_cast<int>(wire::kStatsSessionSlots) + 1);

  ::close(release[1]);
  for (const pid_t child : children) CHECK(testing::wait_for_child(child) == 0);
  const auto drained = testing::poll_until([&] {
    view = monitor::derive(nullptr, stats.value().read());
    return view->totals.sessions == 0 && view->totals.device_bytes == 0;
  });
  INFO("after the clients left: sessions " << view->totals.sessions << ", device bytes " << view->totals.device_bytes);
  CHECK(drained);
}
