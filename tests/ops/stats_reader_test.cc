// What monitors derive from the stats file: quantiles from the power-of-two histogram, rates from
// two snapshots, text that no client-chosen program name can break (JSON, Prometheus labels,
// terminal), and a stats file that is not one.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "broker/metrics.h"
#include "monitor/stats_reader.h"

using namespace gpubroker;
using monitor::latency_quantile_ns;

TEST_CASE("a latency quantile lies inside the bucket that holds its rank", "[ops][stats]") {
  std::array<std::uint64_t, wire::kLatencyBuckets> buckets{};
  CHECK_FALSE(latency_quantile_ns(buckets, 0.5).has_value());
  buckets[10] = 100;  // every call took [1024, 2048) ns
  const double p50 = *latency_quantile_ns(buckets, 0.5);
  CHECK(p50 >= 1024);
  CHECK(p50 < 2048);
  buckets[20] = 2;  // two slow calls in [1 Mi, 2 Mi) ns
  CHECK(*latency_quantile_ns(buckets, 0.5) < 2048);
  const double p99 = *latency_quantile_ns(buckets, 0.99);
  CHECK(p99 >= 1 << 20);
  CHECK(p99 < 2 << 20);
}

TEST_CASE("rates come from two snapshots, and a session that opened between them counts from zero",
          "[ops][stats]") {
  monitor::Snapshot before, after;
  before.taken_monotonic_ns = 1'000'000'000;
  after.taken_monotonic_ns = 3'000'000'000;  // two seconds later
  after.taken_realtime_ns = 50'000'000'000;
  monitor::SessionSample old_session;
  old_session.session_id = 7;
  old_session.calls = 100;
  old_session.bytes_to_device = 1000;
  before.sessions.push_back(old_session);
  old_session.calls = 500;
  old_session.bytes_to_device = 5000;
  old_session.started_ns = 40'000'000'000;
  old_session.device_bytes = 3 << 20;
  after.sessions.push_back(old_session);
  monitor::SessionSample fresh;
  fresh.session_id = 8;
  fresh.calls = 60;
  fresh.device_bytes = 1 << 20;
  after.sessions.push_back(fresh);
  after.devices.push_back(monitor::DeviceSample{0, "gpu", {}, 10 << 20, 4 << 20, 0, -1});

  const monitor::View first = monitor::derive(nullptr, before);
  REQUIRE(first.sessions.size() == 1);
  CHECK_FALSE(first.sessions[0].calls_per_second.has_value());  // one snapshot: no rate yet

  const monitor::View view = monitor::derive(&before, after);
  REQUIRE(view.sessions.size() == 2);
  CHECK(*view.sessions[0].calls_per_second == Approx(200.0));
  CHECK(*view.sessions[0].bytes_to_device_per_second == Approx(2000.0));
  CHECK(view.sessions[0].age_seconds == Approx(10.0));
  CHECK(*view.sessions[1].calls_per_second == Approx(30.0));
  CHECK(*view.totals.calls_per_second == Approx(230.0));
  CHECK(view.totals.device_bytes == 4 << 20);
  CHECK(view.devices[0].free_bytes == 6 << 20);
}

TEST_CASE("a session's most called request kinds are those of the interval, most first, at most three",
          "[ops][stats]") {
  monitor::Snapshot before, after;
  before.taken_monotonic_ns = 1'000'000'000;
  after.taken_monotonic_ns = 2'000'000'000;
  monitor::SessionSample s;
  s.session_id = 3;
  s.calls_by_kind[10] = 1000;  // called a lot before the interval, not in it
  s.calls_by_kind[20] = 5;
  before.sessions.push_back(s);
  s.calls_by_kind[20] = 65;  // +60
  s.calls_by_kind[30] = 30;  // +30
  s.calls_by_kind[31] = 8;   // +8
  s.calls_by_kind[32] = 2;   // +2: fourth, left out
  s.last_kind = 31;
  after.sessions.push_back(s);

  const monitor::View view = monitor::derive(&before, after);
  REQUIRE(view.sessions.size() == 1);
  const auto& top = view.sessions[0].top_kinds;
  REQUIRE(top.size() == 3);
  CHECK(top[0] == std::pair<std::uint32_t, std::uint64_t>{20, 60});
  CHECK(top[1] == std::pair<std::uint32_t, std::uint64_t>{30, 30});
  CHECK(top[2] == std::pair<std::uint32_t, std::uint64_t>{31, 8});
  CHECK(view.sessions[0].kind_calls == 100);
  CHECK(view.sessions[0].sample.last_kind == 31);
  // On a first snapshot, over the session's whole life.
  const monitor::View first = monitor::derive(nullptr, after);
  REQUIRE_FALSE(first.sessions[0].top_kinds.empty());
  CHECK(first.sessions[0].top_kinds[0] == std::pair<std::uint32_t, std::uint64_t>{10, 1000});
}

TEST_CASE("program names from clients come out as valid UTF-8 without control characters", "[ops][stats]") {
  CHECK(monitor::printable_utf8("llama-server") == "llama-server");
  CHECK(monitor::printable_utf8("r\xc3\xa9sum\xc3\xa9") == "r\xc3\xa9sum\xc3\xa9");   // é kept
  CHECK(monitor::printable_utf8("a\nb\x1b[2J") == "a?b?[2J");                          // no terminal escapes
  CHECK(monitor::printable_utf8("x\xff" "y") == "x\xef\xbf\xbdy");                     // invalid byte: U+FFFD
  CHECK(monitor::printable_utf8("\xe2\x82") == "\xef\xbf\xbd\xef\xbf\xbd");            // truncated sequence
  CHECK(monitor::printable_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
}

TEST_CASE("a hostile program name cannot break the JSON or the Prometheus labels", "[ops][stats]") {
  monitor::Snapshot snapshot;
  monitor::SessionSample s;
  s.session_id = 1;
  s.pid = 42;
  s.program = "evil\"} 1\n# x\\";
  snapshot.sessions.push_back(s);
  const std::string json = monitor::to_json(monitor::derive(nullptr, snapshot), "/tmp/s\"ock");
  CHECK(json.find(R"("program":"evil\"} 1?# x\\")") != std::string::npos);
  CHECK(json.find(R"("socket":"/tmp/s\"ock")") != std::string::npos);
  const std::string text = broker::prometheus_text(snapshot, "0.1.0");
  CHECK(text.find(R"(program="evil\"} 1?# x\\")") != std::string::npos);
  for (std::size_t start = 0, end; start < text.size(); start = end + 1) {
    end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    CHECK((line.rfind("# ", 0) == 0 || line.rfind("gpubroker_", 0) == 0));
  }
}

TEST_CASE("a file that is not a stats file, or is missing, is refused with a reason", "[ops][stats]") {
  char directory[] = "/tmp/gpubroker-stats-XXXXXX";
  REQUIRE(::mkdtemp(directory) != nullptr);
  const std::string missing = std::string(directory) + "/none.stats";
  CHECK(monitor::StatsFile::open(missing).error().code == monitor::StatsErrc::kMissing);
  const std::string small = std::string(directory) + "/small.stats";
  std::ofstream(small) << "not stats";
  CHECK(monitor::StatsFile::open(small).error().code == monitor::StatsErrc::kNotStats);
  const std::string wrong = std::string(directory) + "/wrong.stats";
  {
    std::ofstream out(wrong, std::ios::binary);
    std::string bytes(sizeof(wire::StatsSegment), '\x01');
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  CHECK(monitor::StatsFile::open(wrong).error().code == monitor::StatsErrc::kNotStats);
  const std::string starting = std::string(directory) + "/starting.stats";
  std::ofstream{starting}.close();
  // The size of a stats file, all zero: what a broker that is starting has created.
  REQUIRE(::truncate(starting.c_str(), sizeof(wire::StatsSegment)) == 0);
  CHECK(monitor::StatsFile::open(starting).error().code == monitor::StatsErrc::kStarting);
  std::filesystem::remove_all(directory);
}

TEST_CASE("--metrics-listen takes an address literal and a port", "[ops][metrics]") {
  CHECK(broker::parse_listen_address("127.0.0.1:9400")->port == 9400);
  CHECK(broker::parse_listen_address("[::1]:0")->host == "::1");
  CHECK_FALSE(broker::parse_listen_address("localhost").has_value());
  CHECK_FALSE(broker::parse_listen_address("10.0.0.1:65536").has_value());
}
