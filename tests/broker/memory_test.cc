// The broker's memory area (broker/session_memory.*) through a real gpu-broker process on the
// sim driver: device memory, copies of every kind, memset, the session memory limit, and
// isolation between sessions.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "ipc/checksum.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::pattern;

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

TEST_CASE("a memset of 16- or 32-bit words fills whole words; misaligned, ragged or odd-sized ones are refused",
          "[broker][copy]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  const std::uint64_t p = client.alloc(1024);
  REQUIRE(client.upload(p, std::vector<std::byte>(1024, std::byte{0})) == 0);
  client.post(wire::RequestKind::kMemset, wire::MemsetRequest{p, 64, 0, 0x12345678u, 4});
  client.post(wire::RequestKind::kMemset, wire::MemsetRequest{p + 64, 32, 0, 0xbeef, 2});
  std::vector<std::byte> back(1024);
  REQUIRE(client.download(back, p) == 0);
  std::uint32_t word = 0;
  std::uint16_t half = 0;
  std::memcpy(&word, back.data() + 60, 4);
  std::memcpy(&half, back.data() + 94, 2);
  CHECK(word == 0x12345678u);
  CHECK(half == 0xbeef);
  CHECK(back[96] == std::byte{0});
  // Each refusal surfaces at the next synchronizing call, as a posted failure does.
  for (const wire::MemsetRequest& bad : {wire::MemsetRequest{p + 2, 64, 0, 1, 4}, wire::MemsetRequest{p, 62, 0, 1, 4},
                                         wire::MemsetRequest{p, 64, 0, 1, 3}, wire::MemsetRequest{p + 1020, 8, 0, 1, 4}}) {
    client.post(wire::RequestKind::kMemset, bad);
    CHECK(client.call(wire::RequestKind::kContextSynchronize).status == cuda::CUDA_ERROR_INVALID_VALUE);
  }
  REQUIRE(client.download(back, p) == 0);
  std::memcpy(&word, back.data(), 4);
  CHECK(word == 0x12345678u);  // nothing the refused ones named was touched
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
