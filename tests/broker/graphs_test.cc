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
