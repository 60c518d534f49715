// The broker's host functions (broker/session_host_funcs.*) through a real gpu-broker process on
// the sim driver: handed to the client's waiting thread in stream order, and reclaimed with a
// client that dies holding one.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <atomic>
#include <thread>

#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"
#include "tests/support/eventually.h"
#include "tests/support/forked_server.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;

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
