// The broker as a whole, as a user runs it: a real gpu-broker process on the sim driver, real
// client processes, through the transport. The device identity in every client's control
// segment, reclaim after SIGKILL, sd_notify and SIGTERM, the command line, the stats file.
#include <catch2/catch.hpp>

#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/wire/stats.h"
#include "ipc/client_session.h"
#include "ipc/server_session.h"
#include "ipc/system.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"
#include "tests/support/eventually.h"
#include "tests/support/forked_server.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::env_or;
using testing::pattern;

TEST_CASE("the broker hands every client the sim device's identity in its control segment", "[broker]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  const auto* control = reinterpret_cast<const wire::ControlSegment*>(client.session().control_bytes().data());
  REQUIRE(control->devices.count >= 1);
  const bool simulated = std::string(env_or("GPUBROKER_TEST_DRIVER", "sim")) == "sim";
  CHECK(control->devices.simulated == (simulated ? 1u : 0u));
  const wire::DeviceRecord& device = control->devices.devices[0];
  if (simulated) CHECK(std::string(device.name) == "NVIDIA H100 80GB HBM3");
  CHECK(device.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] == 9);
  CHECK(device.attributes[cuda::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT] == 132);
  CHECK(device.attributes[cuda::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN] == 232448);
  CHECK(device.total_bytes > 0);
}

TEST_CASE("clients SIGKILLed at random points leave zero bytes and zero handles behind", "[broker][reclaim]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--log-level=error"}, .environment = {}});
  DeviceClient observer(broker.socket_path());
  const int iterations = std::atoi(env_or("GPUBROKER_KILL_ITERATIONS", "1000"));
  std::mt19937 random(12345);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  int killed_holding_memory = 0;
  for (int i = 0; i < iterations; ++i) {
    const auto delay = std::chrono::microseconds(random() % 2000);
    const pid_t client = testing::run_in_child([&] {
      auto session = ipc::ClientSession::connect(testing::client_options(broker.socket_path(), wire::kProtocol));
      if (!session) return 1;
      ipc::ClientSession& s = *session.value();
      std::vector<std::byte> data(1 << 20);
      for (std::uint64_t n = 0;; ++n) {
        const wire::MemAllocRequest alloc{0, 0, 1 << 20};
        auto p = s.call(wire::RequestKind::kMemAlloc, std::as_bytes(std::span(&alloc, 1)));
        if (!p) return 0;
        const std::uint64_t pointer = p.value().result_as<wire::PointerResult>().pointer;
        const wire::CopyRequest copy{pointer, 0, data.size(), n % 3};
        (void)s.call(wire::RequestKind::kCopyHostToDevice, std::as_bytes(std::span(&copy, 1)), ipc::StagedOut{data});
        const wire::StreamCreateRequest stream{100 + n, 1, 0};
        (void)s.post(wire::RequestKind::kStreamCreate, std::as_bytes(std::span(&stream, 1)));
        const wire::EventCreateRequest event{n, 0, 0};
        (void)s.post(wire::RequestKind::kEventCreate, std::as_bytes(std::span(&event, 1)));
        const wire::EventStreamRequest record{n, 100 + n};
        (void)s.post(wire::RequestKind::kEventRecord, std::as_bytes(std::span(&record, 1)));
        if (n == 0) [[maybe_unused]] auto w = ::write(ready[1], "r", 1);  // it holds memory now
      }
    });
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    std::this_thread::sleep_for(delay);  // then somewhere in its loop
    if (observer.totals().device_bytes > 0) ++killed_holding_memory;
    ::kill(client, SIGKILL);
    testing::wait_for_child(client);
  }
  ::close(ready[0]);
  ::close(ready[1]);
  CHECK(killed_holding_memory == iterations);
  // The broker reclaims each dead session as it notices it: the last ones a moment after the kill.
  wire::BrokerTotals totals{};
  const testing::Waited reclaimed = testing::poll_until([&] {
    totals = observer.totals();
    return totals.sessions == 1 && totals.device_bytes == 0;
  });
  INFO("the last session reclaimed " << reclaimed.milliseconds << " ms after its kill");
  CHECK(totals.sessions == 1);  // the observer
  CHECK(totals.device_bytes == 0);
  CHECK(totals.allocations == 0);
  CHECK(totals.streams == 0);
  CHECK(totals.events == 0);
  CHECK(totals.arena_registrations == 0);
  CHECK(totals.graphs == 0);
  CHECK(totals.blas_handles == 0);
}

TEST_CASE("the broker tells systemd it is ready and stopping, and exits 0 on SIGTERM", "[broker][notify]") {
  TempDir dir;
  const std::string notify_path = dir.path() + "/notify.sock";
  const int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, notify_path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(notify, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  timeval timeout{30, 0};  // a deadline for the broker's start and stop, not a figure
  ::setsockopt(notify, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  auto next_message = [&] {
    char buffer[1024];
    const ssize_t n = ::recv(notify, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
  };

  BrokerProcess broker(dir, {.arguments = {}, .environment = {{"NOTIFY_SOCKET", notify_path}}});
  const std::string ready = next_message();
  CHECK(ready.find("READY=1") != std::string::npos);
  CHECK(ready.find("STATUS=serving ") != std::string::npos);
  {
    DeviceClient client(broker.socket_path());
    CHECK(client.alloc(1 << 20) != 0);
    CHECK(broker.stop() == 0);  // with a session still open
    CHECK(client.session().state() == wire::SessionState::kShutdown);
  }
  CHECK(next_message().find("STOPPING=1") != std::string::npos);
  ::close(notify);
}

TEST_CASE("gpu-broker answers --help and --version and rejects bad options", "[broker][cli]") {
  auto run = [](const std::string& args) {
    const std::string command = std::string(env_or("GPUBROKER_BROKER", "gpu-broker")) + " " + args + " >/dev/null 2>&1";
    const int status = std::system(command.c_str());
    return WEXITSTATUS(status);
  };
  CHECK(run("--help") == 0);
  CHECK(run("--version") == 0);
  CHECK(run("--driver=opencl") == 2);
  CHECK(run("--session-memory-limit=lots") == 2);
  CHECK(run("--sim-devices=0") == 2);
  CHECK(run("--sim-devices=17") == 2);  // more than the device table carries
  CHECK(run("--sim-devices=two") == 2);
  CHECK(run("--sim-kernels=") == 2);  // PATH[:PATH...] or none
  // A discovery record that cannot be written fails the sim's cuInit: no broker, rather than a
  // run that records nothing.
  CHECK(run("--driver=sim --sim-discover=/nonexistent-directory/kernels.tsv") == 1);
  CHECK(run("--no-such-option=1") == 2);
}

TEST_CASE("the stats file shows each session and the memory it holds, and disappears with the broker",
          "[broker][stats]") {
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string path = broker.socket_path() + ".stats";
  {
    DeviceClient client(broker.socket_path());
    const std::uint64_t p = client.alloc(3 << 20);
    REQUIRE(client.upload(p, pattern(3 << 20, 1)) == 0);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto mapping = ipc::map_shared(fd, sizeof(wire::StatsSegment));
    ::close(fd);
    REQUIRE_FALSE(mapping);  // a read-only descriptor cannot be mapped for writing
    const int ro = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    void* address = ::mmap(nullptr, sizeof(wire::StatsSegment), PROT_READ, MAP_SHARED, ro, 0);
    ::close(ro);
    REQUIRE(address != MAP_FAILED);
    const auto* stats = static_cast<const wire::StatsSegment*>(address);
    CHECK(stats->header.magic == wire::kStatsMagic);
    CHECK(stats->header.broker_pid == static_cast<std::uint32_t>(broker.pid()));
    // The broker records a call just after completing it: give the last one a moment to land.
    auto session_slot = [&](wire::SessionStats& copy) {
      for (const wire::SessionStats& slot : stats->sessions) {
        if (wire::read_consistent(slot, copy) && copy.in_use != 0) return true;
      }
      return false;
    };
    wire::SessionStats copy{};
    const testing::Waited recorded = testing::poll_until([&] { return session_slot(copy) && copy.calls >= 2; });
    INFO("the second call recorded after " << recorded.milliseconds << " ms");
    bool found = false;
    if (session_slot(copy)) {
      found = true;
      CHECK(std::string(copy.program) == "ipc-test");
      CHECK(copy.pid == static_cast<std::uint32_t>(::getpid()));
      CHECK(copy.device_bytes == 3u << 20);
      CHECK(copy.bytes_to_device == 3u << 20);
      CHECK(copy.calls >= 2);
    }
    CHECK(found);
    ::munmap(address, sizeof(wire::StatsSegment));
  }
  CHECK(broker.stop() == 0);
  CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("a production broker serves the transport's Null and Echo, and closes a session that asks for a staging "
          "test kind, alone",
          "[broker][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient honest(broker.socket_path());
  const std::uint64_t kept = honest.alloc(4096);
  REQUIRE(honest.upload(kept, pattern(4096, 3)) == 0);
  using Kind = wire::TransportKind;
  std::vector<std::byte> big(1 << 20);
  const std::vector<std::pair<const char*, std::function<ipc::Result<ipc::Completion>(ipc::ClientSession&)>>> test_kinds = {
      {"StagePattern",
       [&](ipc::ClientSession& s) {
         const wire::PatternRequest seed{1};
         return s.call(Kind::kStagePattern, wire::bytes_of(seed), ipc::StagedIn{big});
       }},
      {"StageChecksum", [&](ipc::ClientSession& s) { return s.call(Kind::kStageChecksum, {}, ipc::StagedOut{big}); }},
      {"StageToScratch", [&](ipc::ClientSession& s) { return s.call(Kind::kStageToScratch, {}, ipc::StagedOut{big}); }},
      {"StageFromScratch", [&](ipc::ClientSession& s) { return s.call(Kind::kStageFromScratch, {}, ipc::StagedIn{big}); }},
      {"ArenaChecksum",
       [&](ipc::ClientSession& s) {
         const wire::ArenaRange range{0, 4096};
         return s.call(Kind::kArenaChecksum, wire::bytes_of(range));
       }},
  };
  for (const auto& [name, ask] : test_kinds) {
    INFO(name);
    DeviceClient tester(broker.socket_path());
    // The kinds that measure the rings are served: benchmarks use them against a real broker.
    CHECK(tester.session().call(Kind::kNull, {}).has_value());
    const std::string hello = "echo";
    auto echoed = tester.session().call(Kind::kEcho, std::as_bytes(std::span(hello.data(), hello.size())));
    REQUIRE(echoed.has_value());
    CHECK(std::string(reinterpret_cast<const char*>(echoed.value().result), echoed.value().result_bytes) == hello);
    auto refused = ask(tester.session());
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == ipc::IpcErrc::kSessionClosed);
    CHECK(tester.session().violation() == static_cast<std::uint32_t>(ipc::ViolationCode::kUnknownKind));
  }
  // The honest session next to them lost nothing.
  std::vector<std::byte> back(4096);
  REQUIRE(honest.download(back, kept) == 0);
  CHECK(back == pattern(4096, 3));
}
