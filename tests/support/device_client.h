// Test support: a client of a gpu-broker process that speaks the device request kinds directly
// (the runtime shim's job in issue 4), so that a broker test sends exactly the request it means
// and reads the raw completion. Every call REQUIREs that the transport answered; the CUDA status
// in the completion is the test's to check. Inside a Catch2 test case, from any thread, as
// ipc::ClientSession may be.
//
// Example:
//   TempDir dir;
//   BrokerProcess broker(dir);
//   DeviceClient client(broker.socket_path());
//   const std::uint64_t p = client.alloc(4096);
//   CHECK(client.upload(p, pattern(4096, 1)) == cuda::CUDA_SUCCESS);
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/driver_api.h"
#include "ipc/client_session.h"

namespace gpubroker::testing {

class DeviceClient {
 public:
  explicit DeviceClient(const std::string& socket_path);  // FAILs when the broker does not accept it

  template <class Payload>
  ipc::Completion call(wire::RequestKind kind, const Payload& payload) {
    auto reply = session_->call(kind, std::as_bytes(std::span(&payload, 1)));
    REQUIRE(reply);
    return reply.value();
  }
  ipc::Completion call(wire::RequestKind kind);
  template <class Payload>
  void post(wire::RequestKind kind, const Payload& payload) {
    REQUIRE(session_->post(kind, std::as_bytes(std::span(&payload, 1))));
  }

  // cuMemAlloc on device 0; CHECKs that the status is `expected`.
  std::uint64_t alloc(std::uint64_t bytes, cuda::CUresult expected = cuda::CUDA_SUCCESS);
  cuda::CUresult free(std::uint64_t pointer);
  // Pageable copies through the staging pipes.
  cuda::CUresult upload(std::uint64_t pointer, std::span<const std::byte> bytes, std::uint64_t stream = 0);
  cuda::CUresult download(std::span<std::byte> bytes, std::uint64_t pointer, std::uint64_t stream = 0);
  wire::BrokerTotals totals();
  ipc::ClientSession& session() { return *session_; }

 private:
  std::unique_ptr<ipc::ClientSession> session_;
};

// `bytes` bytes of ipc::fill_pattern for `seed`: data a test can tell from any other seed's.
std::vector<std::byte> pattern(std::size_t bytes, std::uint64_t seed);

}  // namespace gpubroker::testing
