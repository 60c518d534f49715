// The broker's graphs (broker/session_graphs.*) through a real gpu-broker process on the sim
// driver: stream capture, instantiation, launch and update.
#include <catch2/catch.hpp>

#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::pattern;

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

namespace {

// Captures, on the client's stream 5, one operation into graph `graph` and instantiates it as
// `exec`.
template <class Payload>
void capture(DeviceClient& client, wire::RequestKind kind, const Payload& payload, std::uint64_t graph,
             std::uint64_t exec) {
  REQUIRE(client.call(wire::RequestKind::kStreamBeginCapture,
                      wire::CaptureRequest{5, static_cast<std::uint64_t>(cuda::CU_STREAM_CAPTURE_MODE_GLOBAL)})
              .status == 0);
  client.post(kind, payload);
  REQUIRE(client.call(wire::RequestKind::kStreamEndCapture, wire::CaptureRequest{5, graph}).status == 0);
  REQUIRE(client.call(wire::RequestKind::kGraphInstantiate, wire::GraphRequest{graph, exec}).status == 0);
}

int launch_and_wait(DeviceClient& client, std::uint64_t exec) {
  const int launched = client.call(wire::RequestKind::kGraphLaunch, wire::GraphRequest{exec, 5}).status;
  const int synchronized = client.call(wire::RequestKind::kStreamSynchronize, wire::HandleRequest{5}).status;
  return launched != 0 ? launched : synchronized;
}

}  // namespace

TEST_CASE("a graph whose memset or copy names memory freed since is refused at launch, and the session that got "
          "that memory keeps its bytes",
          "[broker][graph][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient attacker(broker.socket_path());
  DeviceClient victim(broker.socket_path());
  attacker.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{5, cuda::CU_STREAM_NON_BLOCKING, 0});
  const std::uint64_t kept = attacker.alloc(4096);
  const std::uint64_t freed = attacker.alloc(4096);
  const std::uint64_t source = attacker.alloc(4096);
  REQUIRE(attacker.upload(source, pattern(4096, 7)) == 0);
  capture(attacker, wire::RequestKind::kMemset, wire::MemsetRequest{freed, 4096, 5, 0x66, 0}, 40, 41);
  capture(attacker, wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{freed, source, 4096, 5}, 42, 43);
  capture(attacker, wire::RequestKind::kCopyDeviceToDevice, wire::CopyRequest{source, freed, 4096, 5}, 44, 45);
  capture(attacker, wire::RequestKind::kMemset, wire::MemsetRequest{kept, 4096, 5, 0x11, 0}, 46, 47);
  CHECK(launch_and_wait(attacker, 41) == 0);  // while the memory is the attacker's, the graphs run

  // The memory goes, and whoever allocates next may get the same address: the victim, then the
  // attacker itself.
  REQUIRE(attacker.free(freed) == 0);
  std::vector<std::uint64_t> victim_buffers;
  for (int i = 0; i < 4; ++i) {
    victim_buffers.push_back(victim.alloc(4096));
    REQUIRE(victim.upload(victim_buffers.back(), pattern(4096, 100 + i)) == 0);
  }
  const std::uint64_t again = attacker.alloc(4096);
  INFO("freed " << freed << ", the attacker's new buffer " << again);
  CHECK(launch_and_wait(attacker, 41) == cuda::CUDA_ERROR_INVALID_VALUE);  // memset into it
  CHECK(launch_and_wait(attacker, 43) == cuda::CUDA_ERROR_INVALID_VALUE);  // copy into it
  CHECK(launch_and_wait(attacker, 45) == cuda::CUDA_ERROR_INVALID_VALUE);  // copy out of it
  // A graph whose memory is still there runs after the session let go of other memory.
  CHECK(launch_and_wait(attacker, 47) == 0);
  std::vector<std::byte> back(4096);
  REQUIRE(attacker.download(back, kept) == 0);
  CHECK(back == std::vector<std::byte>(4096, std::byte{0x11}));
  for (int i = 0; i < 4; ++i) {
    REQUIRE(victim.download(back, victim_buffers[i]) == 0);
    CHECK(back == pattern(4096, 100 + i));
  }
  // An update to a graph over live memory makes the exec launchable again.
  capture(attacker, wire::RequestKind::kMemset, wire::MemsetRequest{again, 4096, 5, 0x22, 0}, 48, 49);
  CHECK(attacker.call(wire::RequestKind::kGraphExecUpdate, wire::GraphRequest{41, 48}).status == 0);
  CHECK(launch_and_wait(attacker, 41) == 0);
  REQUIRE(attacker.download(back, again) == 0);
  CHECK(back == std::vector<std::byte>(4096, std::byte{0x22}));
}

TEST_CASE("a capture asked for in the global mode does not stop another session's allocations",
          "[broker][graph][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient capturing(broker.socket_path());
  DeviceClient other(broker.socket_path());
  capturing.post(wire::RequestKind::kStreamCreate, wire::StreamCreateRequest{5, cuda::CU_STREAM_NON_BLOCKING, 0});
  REQUIRE(capturing.call(wire::RequestKind::kStreamBeginCapture,
                         wire::CaptureRequest{5, static_cast<std::uint64_t>(cuda::CU_STREAM_CAPTURE_MODE_GLOBAL)})
              .status == 0);
  const std::uint64_t p = other.alloc(4096);
  CHECK(p != 0);
  CHECK(other.free(p) == 0);
  CHECK(capturing.call(wire::RequestKind::kStreamEndCapture, wire::CaptureRequest{5, 40}).status == 0);
  CHECK(capturing.call(wire::RequestKind::kStreamBeginCapture, wire::CaptureRequest{5, 7}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);  // no such mode
}
