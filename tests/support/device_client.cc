#include "tests/support/device_client.h"

#include "ipc/checksum.h"
#include "tests/support/forked_server.h"

namespace gpubroker::testing {

DeviceClient::DeviceClient(const std::string& socket_path) {
  auto session = ipc::ClientSession::connect(client_options(socket_path, wire::kProtocol));
  if (!session) FAIL("connect failed: " << ipc::describe(session.error()));
  session_ = std::move(session.value());
}

ipc::Completion DeviceClient::call(wire::RequestKind kind) {
  auto reply = session_->call(kind, {});
  REQUIRE(reply);
  return reply.value();
}

std::uint64_t DeviceClient::alloc(std::uint64_t bytes, cuda::CUresult expected) {
  auto c = call(wire::RequestKind::kMemAlloc, wire::MemAllocRequest{0, 0, bytes});
  CHECK(c.status == expected);
  return c.result_as<wire::PointerResult>().pointer;
}

cuda::CUresult DeviceClient::free(std::uint64_t pointer) {
  return call(wire::RequestKind::kMemFree, wire::HandleRequest{pointer}).status;
}

cuda::CUresult DeviceClient::upload(std::uint64_t pointer, std::span<const std::byte> bytes, std::uint64_t stream) {
  const wire::CopyRequest copy{pointer, 0, bytes.size(), stream};
  auto reply = session_->call(wire::RequestKind::kCopyHostToDevice, std::as_bytes(std::span(&copy, 1)),
                              ipc::StagedOut{bytes});
  REQUIRE(reply);
  return reply.value().status;
}

cuda::CUresult DeviceClient::download(std::span<std::byte> bytes, std::uint64_t pointer, std::uint64_t stream) {
  const wire::CopyRequest copy{0, pointer, bytes.size(), stream};
  auto reply = session_->call(wire::RequestKind::kCopyDeviceToHost, std::as_bytes(std::span(&copy, 1)),
                              ipc::StagedIn{bytes});
  REQUIRE(reply);
  return reply.value().status;
}

wire::BrokerTotals DeviceClient::totals() {
  return call(wire::RequestKind::kBrokerTotals).result_as<wire::BrokerTotals>();
}

std::vector<std::byte> pattern(std::size_t bytes, std::uint64_t seed) {
  std::vector<std::byte> data(bytes);
  ipc::fill_pattern(data, seed, 0);
  return data;
}

}  // namespace gpubroker::testing
