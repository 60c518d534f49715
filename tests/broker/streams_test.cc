// The broker's streams and events (broker/session_streams.*) through a real gpu-broker process
// on the sim driver: order within a stream, events between streams, asynchronous errors, the
// legacy default stream, and one session's synchronize not stalling another.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::pattern;

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

TEST_CASE("a device synchronize makes no stream on a device the session never used, and waits for the ones it did",
          "[broker][stream]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  CHECK(client.call(wire::RequestKind::kContextSynchronize).status == 0);
  CHECK(client.totals().streams == 0);  // answered at once: nothing to wait for, nothing made
  const std::uint64_t p = client.alloc(1 << 20);
  client.post(wire::RequestKind::kMemset, wire::MemsetRequest{p, 1 << 20, 0, 0x5a, 0});
  CHECK(client.call(wire::RequestKind::kContextSynchronize).status == 0);
  CHECK(client.totals().streams == 1);  // the default stream the memset used
  std::vector<std::byte> back(1 << 20);
  REQUIRE(client.download(back, p) == 0);
  CHECK(back == std::vector<std::byte>(1 << 20, std::byte{0x5a}));
}
