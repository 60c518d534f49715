// The gpu-broker daemon as a user runs it: a real broker process on the sim driver, real client
// processes, through the transport. Device memory, copies of every kind, streams and events,
// limits, isolation between sessions, reclaim after SIGKILL, sd_notify and SIGTERM.
#include <catch2/catch.hpp>

#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/driver_api.h"
#include "ipc/checksum.h"
#include "gpubroker/wire/stats.h"
#include "ipc/client_session.h"
#include "ipc/system.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"
#include "tests/support/eventually.h"
#include "tests/support/forked_server.h"

using namespace gpubroker;
using namespace std::chrono_literals;
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

TEST_CASE("device memory round-trips through pageable staging, pinned arena and device-to-device copies",
          "[broker][copy]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  for (std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{300'001}, std::size_t{20} << 20}) {
    INFO("size " << size);
    const auto data = pattern(size, size);
    const std::uint64_t a = client.alloc(size), b = client.alloc(size);
    REQUIRE(a != 0);
    CHECK(client.upload(a, data) == cuda::CUDA_SUCCESS);
    CHECK(client.call(wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{b, a, size, 0}).status == 0);
    std::vector<std::byte> back(size);
    CHECK(client.download(back, b) == cuda::CUDA_SUCCESS);
    CHECK(back == data);

    // Pinned: the arena is the source and destination, and nothing is staged.
    ipc::HostArena& arena = client.session().arena();
    std::byte* pinned = arena.allocate(size).value();
    const std::uint64_t offset = *arena.offset_of(pinned, size);
    REQUIRE(client.call(wire::RequestKind::kArenaRegister, wire::ArenaRange{offset, size}).status == 0);
    const auto staged_before = client.totals().staged_bytes;
    std::memset(pinned, 0, size);
    CHECK(client.call(wire::RequestKind::kCopyDeviceToArena, wire::CopyRequest{offset, b, size, 0}).status == 0);
    CHECK(std::memcmp(pinned, data.data(), size) == 0);
    ipc::fill_pattern(std::span(pinned, size), size + 1, 0);
    CHECK(client.call(wire::RequestKind::kCopyArenaToDevice, wire::CopyRequest{a, offset, size, 0}).status == 0);
    CHECK(client.download(back, a) == cuda::CUDA_SUCCESS);
    CHECK(std::memcmp(back.data(), pinned, size) == 0);
    const auto totals = client.totals();
    CHECK(totals.staged_bytes - staged_before == size);  // only the one pageable download
    CHECK(totals.zero_copy_bytes >= 2 * size);
    CHECK(client.call(wire::RequestKind::kArenaUnregister, wire::ArenaRange{offset, 0}).status == 0);
    arena.free(pinned);
    CHECK(client.free(a) == 0);
    CHECK(client.free(b) == 0);
  }
}

TEST_CASE("memset fills exactly the bytes it is given", "[broker][copy]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  const std::uint64_t p = client.alloc(1000);
  REQUIRE(client.upload(p, std::vector<std::byte>(1000, std::byte{0})) == 0);
  client.post(wire::RequestKind::kMemset, wire::MemsetRequest{p + 100, 50, 0, 0xab, 0});
  std::vector<std::byte> back(1000);
  REQUIRE(client.download(back, p) == 0);
  for (std::size_t i = 0; i < back.size(); ++i) {
    const std::byte expected = i >= 100 && i < 150 ? std::byte{0xab} : std::byte{0};
    if (back[i] != expected) FAIL("byte " << i << " is " << int(back[i]));
  }
}

TEST_CASE("the session memory limit makes allocations fail and memory queries report the session's view",
          "[broker][limit]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--session-memory-limit=64M"}, .environment = {}});
  DeviceClient client(broker.socket_path());
  auto info = client.call(wire::RequestKind::kMemGetInfo, wire::DeviceRequest{0, 0}).result_as<wire::MemInfoResult>();
  CHECK(info.total == 64ull << 20);
  CHECK(info.free == 64ull << 20);
  const std::uint64_t a = client.alloc(40ull << 20);
  client.alloc(40ull << 20, cuda::CUDA_ERROR_OUT_OF_MEMORY);
  info = client.call(wire::RequestKind::kMemGetInfo, wire::DeviceRequest{0, 0}).result_as<wire::MemInfoResult>();
  CHECK(info.free == 24ull << 20);
  const std::uint64_t b = client.alloc(24ull << 20);
  CHECK(b != 0);
  CHECK(client.free(a) == 0);
  CHECK(client.alloc(40ull << 20) != 0);
  // Another session has a limit of its own.
  DeviceClient other(broker.socket_path());
  CHECK(other.alloc(64ull << 20) != 0);
}

TEST_CASE("one session can neither free nor copy another session's memory, and unknown handles are errors",
          "[broker][isolation]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient owner(broker.socket_path()), intruder(broker.socket_path());
  const std::uint64_t p = owner.alloc(4096);
  REQUIRE(owner.upload(p, pattern(4096, 1)) == 0);
  CHECK(intruder.free(p) == cuda::CUDA_ERROR_INVALID_VALUE);
  std::vector<std::byte> stolen(4096);
  CHECK(intruder.download(stolen, p) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(stolen == std::vector<std::byte>(4096));  // zeros, not the owner's bytes
  CHECK(intruder.upload(p, pattern(4096, 2)) == cuda::CUDA_ERROR_INVALID_VALUE);
  const std::uint64_t mine = intruder.alloc(4096);
  CHECK(intruder.call(wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{mine, p, 4096, 0}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);
  std::vector<std::byte> back(4096);
  REQUIRE(owner.download(back, p) == 0);
  CHECK(back == pattern(4096, 1));
  // Out of range, unknown handles.
  CHECK(owner.download(back, p + 1) == cuda::CUDA_ERROR_INVALID_VALUE);  // one byte past the end
  CHECK(owner.free(p + 8) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(owner.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{777}).status ==
        cuda::CUDA_ERROR_INVALID_HANDLE);
  CHECK(owner.call(wire::RequestKind::kEventQuery, wire::HandleRequest{5}).status == cuda::CUDA_ERROR_INVALID_HANDLE);
  CHECK(owner.call(wire::RequestKind::kMemAlloc, wire::MemAllocRequest{9, 0, 16}).status ==
        cuda::CUDA_ERROR_INVALID_DEVICE);
  CHECK(owner.call(wire::RequestKind::kCopyArenaToDevice, wire::CopyRequest{p, 1ull << 40, 16, 0}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);
}

TEST_CASE("streams keep order, events order streams, and asynchronous errors surface at the next sync",
          "[broker][stream]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  const std::uint64_t size = 8ull << 20;
  const std::uint64_t a = client.alloc(size), b = client.alloc(size), c = client.alloc(size);
  REQUIRE(client.upload(a, pattern(size, 3)) == 0);
  client.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{10, cuda::CU_STREAM_NON_BLOCKING, 0});
  client.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{11, cuda::CU_STREAM_NON_BLOCKING, 0});
  client.post(wire::RequestKind::kEventCreate, wire::EventCreateRequest{20, 0, 0});
  client.post(wire::RequestKind::kEventCreate, wire::EventCreateRequest{21, 0, 0});
  // Stream 10: a -> b, then record; stream 11 waits for it, then b -> c.
  client.post(wire::RequestKind::kEventRecord, wire::EventStreamRequest{21, 10});
  client.post(wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{b, a, size, 10});
  client.post(wire::RequestKind::kEventRecord, wire::EventStreamRequest{20, 10});
  client.post(wire::RequestKind::kStreamWaitEvent, wire::EventStreamRequest{20, 11});
  client.post(wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{c, b, size, 11});
  CHECK(client.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{11}).status == 0);
  std::vector<std::byte> back(size);
  REQUIRE(client.download(back, c, 11) == 0);
  CHECK(back == pattern(size, 3));
  CHECK(client.call(wire::RequestKind::kEventSynchronize, wire::HandleRequest{20}).status == 0);
  CHECK(client.call(wire::RequestKind::kEventQuery, wire::HandleRequest{20}).status == 0);
  auto elapsed = client.call(wire::RequestKind::kEventElapsedTime, wire::EventPairRequest{21, 20});
  CHECK(elapsed.status == 0);
  CHECK(elapsed.result_as<float>() >= 0.0f);
  CHECK(client.call(wire::RequestKind::kStreamQuery, wire::HandleRequest{10}).status == 0);

  // An asynchronous failure is reported by the next synchronizing call, once.
  client.post(wire::RequestKind::kMemset, wire::MemsetRequest{0xdead0000, 16, 0, 0, 0});
  CHECK(client.call(wire::RequestKind::kContextSynchronize).status == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(client.call(wire::RequestKind::kContextSynchronize).status == 0);
  const auto totals = client.totals();
  CHECK(totals.streams >= 2);
  CHECK(totals.events == 2);
}

TEST_CASE("a synchronize on one session's stream does not stall another session", "[broker][stream]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient busy(broker.socket_path()), other(broker.socket_path());
  const std::uint64_t size = 256ull << 20;
  const std::uint64_t a = busy.alloc(size), b = busy.alloc(size);
  // Queue a lot of device work on busy's default stream, then synchronize from a thread.
  for (int i = 0; i < 8; ++i) busy.post(wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{b, a, size, 0});
  std::atomic<bool> synced{false};
  std::thread waiter([&] {
    CHECK(busy.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{0}).status == 0);
    synced = true;
  });
  // The other session answers while busy's work is still running.
  int answered_while_busy = 0;
  for (int i = 0; i < 50; ++i) {
    CHECK(other.call(wire::RequestKind::kMemGetInfo, wire::DeviceRequest{0, 0}).status == 0);
    if (!synced) ++answered_while_busy;
  }
  waiter.join();
  CHECK(answered_while_busy > 0);
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
      auto session = ipc::ClientSession::connect(testing::client_options(broker.socket_path()));
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
  CHECK(run("--no-such-option=1") == 2);
}

TEST_CASE("stream capture records without executing, a launch of the graph executes, and an update takes effect",
          "[broker][graph]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  const std::uint64_t p = client.alloc(4096);
  REQUIRE(client.upload(p, std::vector<std::byte>(4096, std::byte{0})) == 0);
  client.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{5, cuda::CU_STREAM_NON_BLOCKING, 0});
  auto capture_memset = [&](std::uint64_t graph, std::uint32_t value) {
    CHECK(client.call(wire::RequestKind::kStreamBeginCapture,
                      wire::CaptureRequest{5, static_cast<std::uint64_t>(cuda::CU_STREAM_CAPTURE_MODE_GLOBAL)})
              .status == 0);
    CHECK(client.call(wire::RequestKind::kStreamIsCapturing, wire::HandleRequest{5}).result_as<std::int32_t>() ==
          cuda::CU_STREAM_CAPTURE_STATUS_ACTIVE);
    client.post(wire::RequestKind::kMemset, wire::MemsetRequest{p, 4096, 5, value, 0});
    CHECK(client.call(wire::RequestKind::kStreamEndCapture, wire::CaptureRequest{5, graph}).status == 0);
  };
  auto device_bytes = [&] {
    std::vector<std::byte> back(4096);
    REQUIRE(client.download(back, p) == 0);
    return back;
  };
  capture_memset(40, 0x11);
  CHECK(device_bytes() == std::vector<std::byte>(4096, std::byte{0}));  // recorded, not run
  CHECK(client.call(wire::RequestKind::kGraphInstantiate, wire::GraphRequest{40, 41}).status == 0);
  CHECK(client.call(wire::RequestKind::kGraphLaunch, wire::GraphRequest{41, 5}).status == 0);
  CHECK(client.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{5}).status == 0);
  CHECK(device_bytes() == std::vector<std::byte>(4096, std::byte{0x11}));

  capture_memset(42, 0x22);
  auto update = client.call(wire::RequestKind::kGraphExecUpdate, wire::GraphRequest{41, 42});
  CHECK(update.status == 0);
  CHECK(update.result_as<std::int32_t>() == cuda::CU_GRAPH_EXEC_UPDATE_SUCCESS);
  CHECK(client.call(wire::RequestKind::kGraphLaunch, wire::GraphRequest{41, 5}).status == 0);
  CHECK(client.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{5}).status == 0);
  CHECK(device_bytes() == std::vector<std::byte>(4096, std::byte{0x22}));

  CHECK(client.totals().graphs == 3);
  CHECK(client.call(wire::RequestKind::kGraphExecDestroy, wire::HandleRequest{41}).status == 0);
  CHECK(client.call(wire::RequestKind::kGraphDestroy, wire::HandleRequest{40}).status == 0);
  CHECK(client.call(wire::RequestKind::kGraphDestroy, wire::HandleRequest{40}).status == cuda::CUDA_ERROR_INVALID_HANDLE);
  CHECK(client.totals().graphs == 1);  // graph 42 is left for the reclaim
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

TEST_CASE("GEMMs run through the session's cuBLAS handle, and never on another session's memory", "[broker][blas]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path()), other(broker.socket_path());
  // Column-major A (2x3), B (3x2): C = A * B, twice over (a batch of two, the second scaled).
  const std::vector<float> a = {1, 4, 2, 5, 3, 6, 2, 8, 4, 10, 6, 12};
  const std::vector<float> b = {7, 9, 11, 8, 10, 12, 7, 9, 11, 8, 10, 12};
  const std::vector<float> expected = {58, 139, 64, 154, 116, 278, 128, 308};
  auto device_copy = [&](DeviceClient& c, const std::vector<float>& host) {
    const std::uint64_t p = c.alloc(host.size() * sizeof(float));
    REQUIRE(c.upload(p, std::as_bytes(std::span(host))) == 0);
    return p;
  };
  const std::uint64_t da = device_copy(client, a), db = device_copy(client, b), dc = client.alloc(8 * sizeof(float));
  REQUIRE(client.call(wire::RequestKind::kBlasCreate, wire::HandleRequest{1}).status == 0);
  wire::BlasGemmRequest gemm{};
  gemm.handle = 1;
  gemm.transa = gemm.transb = cuda::CUBLAS_OP_N;
  gemm.m = 2, gemm.n = 2, gemm.k = 3;
  gemm.a_type = gemm.b_type = gemm.c_type = cuda::CUDA_R_32F;
  gemm.compute_type = cuda::CUBLAS_COMPUTE_32F;
  gemm.algo = -1;  // CUBLAS_GEMM_DEFAULT
  gemm.lda = 2, gemm.ldb = 3, gemm.ldc = 2, gemm.batch_count = 2;
  gemm.variant = static_cast<std::uint32_t>(wire::GemmVariant::kStridedBatched);
  gemm.a = da, gemm.b = db, gemm.c = dc;
  gemm.stride_a = 6, gemm.stride_b = 6, gemm.stride_c = 4;
  const float one = 1.0f, zero = 0.0f;
  std::memcpy(gemm.alpha, &one, sizeof(one));
  std::memcpy(gemm.beta, &zero, sizeof(zero));
  CHECK(client.call(wire::RequestKind::kBlasGemm, gemm).status == cuda::CUBLAS_STATUS_SUCCESS);
  std::vector<float> c(8);
  REQUIRE(client.download(std::as_writable_bytes(std::span(c)), dc) == 0);
  CHECK(c == expected);

  // Pointer arrays in device memory, read by the broker and checked before cuBLAS runs.
  const std::uint64_t arrays[6] = {da, da + 24, db, db + 24, dc, dc + 16};
  const std::uint64_t darrays = client.alloc(sizeof(arrays));
  REQUIRE(client.upload(darrays, std::as_bytes(std::span(arrays))) == 0);
  REQUIRE(client.upload(dc, std::vector<std::byte>(32)) == 0);
  gemm.variant = static_cast<std::uint32_t>(wire::GemmVariant::kPointerArrays);
  gemm.a = darrays, gemm.b = darrays + 16, gemm.c = darrays + 32;
  CHECK(client.call(wire::RequestKind::kBlasGemm, gemm).status == cuda::CUBLAS_STATUS_SUCCESS);
  REQUIRE(client.download(std::as_writable_bytes(std::span(c)), dc) == 0);
  CHECK(c == expected);

  // Another session's memory, directly or through an array, is refused.
  const std::uint64_t foreign = device_copy(other, a);
  gemm.variant = static_cast<std::uint32_t>(wire::GemmVariant::kSingle);
  gemm.a = foreign, gemm.b = db, gemm.c = dc;
  CHECK(client.call(wire::RequestKind::kBlasGemm, gemm).status == cuda::CUBLAS_STATUS_INVALID_VALUE);
  const std::uint64_t poisoned[6] = {foreign, da, db, db, dc, dc};
  REQUIRE(client.upload(darrays, std::as_bytes(std::span(poisoned))) == 0);
  gemm.variant = static_cast<std::uint32_t>(wire::GemmVariant::kPointerArrays);
  gemm.a = darrays, gemm.b = darrays + 16, gemm.c = darrays + 32;
  CHECK(client.call(wire::RequestKind::kBlasGemm, gemm).status == cuda::CUBLAS_STATUS_INVALID_VALUE);
  CHECK(client.call(wire::RequestKind::kBlasGemm, [&] { auto g = gemm; g.handle = 99; return g; }()).status ==
        cuda::CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(client.totals().blas_handles == 1);
  CHECK(client.call(wire::RequestKind::kBlasDestroy, wire::HandleRequest{1}).status == 0);
  CHECK(client.totals().blas_handles == 0);
}

TEST_CASE("host functions are handed to the client's waiting thread in stream order, and a client that dies "
          "with one unfinished leaves nothing behind", "[broker][hostfunc]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--log-level=error"}, .environment = {}});
  DeviceClient client(broker.socket_path());
  using wire::RequestKind;
  const std::uint64_t pointer = client.alloc(1 << 20);
  client.post(RequestKind::kStreamCreate, wire::StreamCreateRequest{7, 1, 0});
  CHECK(client.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{99, 1}).status == cuda::CUDA_ERROR_INVALID_HANDLE);
  // Queued before anyone waits: handed out at the next wait, in the order the streams reach them.
  client.post(RequestKind::kMemset, wire::MemsetRequest{pointer, 1 << 20, 7, 1, 0});
  CHECK(client.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{7, 11}).status == cuda::CUDA_SUCCESS);
  CHECK(client.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{7, 12}).status == cuda::CUDA_SUCCESS);
  CHECK(client.call(RequestKind::kStreamSynchronize, wire::HandleRequest{7}).status == cuda::CUDA_SUCCESS);
  CHECK(client.call(RequestKind::kHostFuncWait).result_as<std::uint64_t>() == 11);
  CHECK(client.call(RequestKind::kHostFuncWait).result_as<std::uint64_t>() == 12);

  // Two threads wait: the second to arrive is refused at once, the first gets the next function
  // when its stream reaches it.
  std::array<ipc::Completion, 2> replies{};
  std::array<bool, 2> answered{};
  std::atomic<int> returned{0};
  auto wait = [&](int i) {
    auto reply = client.session().call(RequestKind::kHostFuncWait, {});
    answered[i] = reply.has_value();
    if (reply) replies[i] = reply.value();
    returned.fetch_add(1, std::memory_order_release);  // pairs with the acquire load of the poll below
  };
  std::thread first(wait, 0), second(wait, 1);
  // Both have arrived once the second is refused; only then is there a function to hand over.
  const testing::Waited both_waiting =
      testing::poll_until([&] { return returned.load(std::memory_order_acquire) == 1; });
  INFO("the second waiter refused after " << both_waiting.milliseconds << " ms");
  REQUIRE(both_waiting);
  CHECK(client.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{0, 13}).status == cuda::CUDA_SUCCESS);
  first.join();
  second.join();
  REQUIRE((answered[0] && answered[1]));
  const int got = replies[0].status == cuda::CUDA_SUCCESS ? 0 : 1;
  CHECK(replies[got].status == cuda::CUDA_SUCCESS);
  CHECK(replies[got].result_as<std::uint64_t>() == 13);
  CHECK(replies[1 - got].status == cuda::CUDA_ERROR_INVALID_VALUE);

  // A client that dies waiting for one, with another queued and work behind both.
  const pid_t dying = testing::run_in_child([&] {
    DeviceClient c(broker.socket_path());
    const std::uint64_t p = c.alloc(1 << 20);
    c.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{3, 1, 0});
    std::thread([&] { (void)c.session().call(RequestKind::kHostFuncWait, {}); }).detach();
    if (c.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{3, 1}).status != 0) return 1;
    if (c.call(RequestKind::kHostFuncEnqueue, wire::HostFuncRequest{3, 2}).status != 0) return 1;
    c.post(RequestKind::kMemset, wire::MemsetRequest{p, 1 << 20, 3, 0, 0});
    ::_exit(0);
  });
  CHECK(testing::wait_for_child(dying) == 0);
  wire::BrokerTotals totals{};
  const testing::Waited reclaimed = testing::poll_until([&] {
    totals = client.totals();
    return totals.sessions == 1;
  });
  INFO("the dead client's session reclaimed after " << reclaimed.milliseconds << " ms");
  CHECK(totals.sessions == 1);
  CHECK(totals.device_bytes == 1 << 20);  // this client's allocation only
  CHECK(totals.streams == 2);             // its stream 7 and its default stream
}

TEST_CASE("the default stream and blocking streams order each other as CUDA's legacy stream does",
          "[broker][stream]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--log-level=error"}, .environment = {}});
  DeviceClient client(broker.socket_path());
  using wire::RequestKind;
  constexpr std::uint64_t kBytes = 64 << 20;  // long enough for a race to show
  const std::uint64_t a = client.alloc(kBytes), b = client.alloc(kBytes);
  client.post(RequestKind::kStreamCreate, wire::StreamCreateRequest{5, 0, 0});  // blocking
  for (int round = 0; round < 3; ++round) {
    const std::uint32_t value = 0x20 + round;
    // Default stream, then a blocking stream: the copy must see the whole memset.
    client.post(RequestKind::kMemset, wire::MemsetRequest{a, kBytes, 0, value, 0});
    client.post(RequestKind::kCopyDeviceToDevice, wire::CopyRequest{b, a, kBytes, 5});
    // Blocking stream, then the default stream: the memset of b must come after the copy.
    client.post(RequestKind::kMemset, wire::MemsetRequest{a, kBytes, 5, 0, 0});
    client.post(RequestKind::kCopyDeviceToDevice, wire::CopyRequest{a, b, 4096, 1});
    CHECK(client.call(RequestKind::kStreamSynchronize, wire::HandleRequest{0}).status == cuda::CUDA_SUCCESS);
    std::vector<std::byte> head(4096), tail(4096);
    REQUIRE(client.download(head, a) == cuda::CUDA_SUCCESS);
    REQUIRE(client.download(tail, b + kBytes - 4096) == cuda::CUDA_SUCCESS);
    CHECK(head == std::vector<std::byte>(4096, std::byte(value)));
    CHECK(tail == std::vector<std::byte>(4096, std::byte(value)));
  }
}

namespace {

std::vector<std::byte> read_test_file(const std::string& name) {
  const std::string path = std::string(env_or("GPUBROKER_TEST_DATA", "tests/data")) + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) FAIL("cannot open " << path);
  std::vector<std::byte> bytes;
  std::byte buffer[65536];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(f);
  return bytes;
}

// Loads `image` as module `module` and gets `name` as function `function`; returns the status.
cuda::CUresult load_function(DeviceClient& client, const std::vector<std::byte>& image, std::uint64_t module,
                             const std::string& name, std::uint64_t function) {
  const wire::HandleRequest load{module};
  auto loaded = client.session().call(wire::RequestKind::kModuleLoad, wire::bytes_of(load), ipc::StagedOut{image});
  if (!loaded || loaded.value().status != cuda::CUDA_SUCCESS) return loaded ? loaded.value().status : -1;
  const wire::FunctionRequest get{module, function};
  auto got = client.session().call(wire::RequestKind::kModuleGetFunction, wire::bytes_of(get),
                                   ipc::StagedOut{std::as_bytes(std::span(name))});
  return got ? got.value().status : -1;
}

int max_dynamic_shared(DeviceClient& client, std::uint64_t function) {
  return client.call(wire::RequestKind::kFuncGetAttributes, wire::FuncAttributeRequest{function, 0, 0})
      .result_as<wire::FuncAttributesResult>()
      .values[cuda::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES];
}

}  // namespace

TEST_CASE("identical images without device variables share one module; others get their own", "[broker][module]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--log-level=error"}, .environment = {}});
  DeviceClient a(broker.socket_path()), b(broker.socket_path());
  using wire::RequestKind;
  constexpr int kMaxDynamicShared = cuda::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
  const std::vector<std::byte> kernels = read_test_file("fatbin/kernels_sm90_zstd.fatbin");
  const std::vector<std::byte> globals = read_test_file("fatbin/globals_sm90.fatbin");
  REQUIRE(load_function(a, kernels, 1, "_Z9no_paramsv", 10) == cuda::CUDA_SUCCESS);
  REQUIRE(load_function(b, kernels, 7, "_Z9no_paramsv", 70) == cuda::CUDA_SUCCESS);
  REQUIRE(load_function(a, globals, 2, "_Z8count_upPi", 20) == cuda::CUDA_SUCCESS);
  REQUIRE(load_function(b, globals, 8, "_Z8count_upPi", 80) == cuda::CUDA_SUCCESS);

  // Shared: what a raises, b sees; a lower value from b leaves it raised (a's launches stay valid).
  CHECK(a.call(RequestKind::kFuncSetAttribute, wire::FuncAttributeRequest{10, kMaxDynamicShared, 100 << 10}).status ==
        cuda::CUDA_SUCCESS);
  CHECK(max_dynamic_shared(b, 70) == 100 << 10);
  CHECK(b.call(RequestKind::kFuncSetAttribute, wire::FuncAttributeRequest{70, kMaxDynamicShared, 60 << 10}).status ==
        cuda::CUDA_SUCCESS);
  CHECK(max_dynamic_shared(a, 10) == 100 << 10);
  // Not shared (the image has __device__ variables): each session's module is its own.
  CHECK(a.call(RequestKind::kFuncSetAttribute, wire::FuncAttributeRequest{20, kMaxDynamicShared, 90 << 10}).status ==
        cuda::CUDA_SUCCESS);
  CHECK(max_dynamic_shared(b, 80) == 48 << 10);
  CHECK(max_dynamic_shared(a, 20) == 90 << 10);

  // One session's unload leaves the other's module working; the last one unloads it.
  CHECK(a.call(RequestKind::kModuleUnload, wire::HandleRequest{1}).status == cuda::CUDA_SUCCESS);
  CHECK(a.call(RequestKind::kFuncGetAttributes, wire::FuncAttributeRequest{10, 0, 0}).status ==
        cuda::CUDA_ERROR_INVALID_HANDLE);
  CHECK(max_dynamic_shared(b, 70) == 100 << 10);
  CHECK(b.call(RequestKind::kModuleUnload, wire::HandleRequest{7}).status == cuda::CUDA_SUCCESS);
  // Loaded again after both let go: a fresh module, with the driver's default limit.
  REQUIRE(load_function(a, kernels, 3, "_Z9no_paramsv", 30) == cuda::CUDA_SUCCESS);
  CHECK(max_dynamic_shared(a, 30) == 48 << 10);
  CHECK(a.totals().modules == 3);  // a: globals and kernels again; b: globals
}
