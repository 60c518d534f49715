// The broker's VMM area (broker/session_vmm.*) through a real gpu-broker process on the sim
// driver, in the raw requests the libcuda.so.1 shim sends (tests/driver_shim_test.cc drives the
// same calls through libcuda): reserve, create, map, set access, copies, unmap, release, and one
// session's mappings out of another's reach.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::pattern;

TEST_CASE("with contexts per user (the default) the broker makes no VMM reservation or allocation", "[broker][vmm]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path());
  using wire::RequestKind;
  const auto granularity =
      client.call(RequestKind::kVmmGranularity, wire::VmmGranularityRequest{0, cuda::CU_MEM_ALLOC_GRANULARITY_MINIMUM});
  REQUIRE(granularity.status == cuda::CUDA_SUCCESS);
  const std::uint64_t granule = granularity.result_as<std::uint64_t>();
  CHECK(client.call(RequestKind::kVmmAddressReserve, wire::VmmReserveRequest{granule, 0, 0, 0}).status ==
        cuda::CUDA_ERROR_NOT_SUPPORTED);
  CHECK(client.call(RequestKind::kVmmCreate, wire::VmmCreateRequest{granule, 0, 0, 0}).status ==
        cuda::CUDA_ERROR_NOT_SUPPORTED);
  CHECK(client.totals().device_bytes == 0);
  const std::uint64_t plain = client.alloc(granule);  // cudaMalloc serves instead
  CHECK(client.free(plain) == cuda::CUDA_SUCCESS);
}

// One context for all (--isolation=none): the mode that serves VMM.
TEST_CASE("a VMM mapping is the session's memory once access is granted, out of another session's reach, "
          "and gone with its last unmap", "[broker][vmm]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {"--isolation=none"}, .environment = {}});
  DeviceClient owner(broker.socket_path()), intruder(broker.socket_path());
  using wire::RequestKind;
  const wire::BrokerTotals before = owner.totals();
  const auto granularity =
      owner.call(RequestKind::kVmmGranularity, wire::VmmGranularityRequest{0, cuda::CU_MEM_ALLOC_GRANULARITY_MINIMUM});
  REQUIRE(granularity.status == cuda::CUDA_SUCCESS);
  const std::uint64_t granule = granularity.result_as<std::uint64_t>();
  REQUIRE(granule > 0);
  const std::uint64_t reserved = 4 * granule, bytes = 2 * granule;

  // Reserve, create and map: the mapping counts as the session's device memory at once.
  const auto reservation = owner.call(RequestKind::kVmmAddressReserve, wire::VmmReserveRequest{reserved, 0, 0, 0});
  REQUIRE(reservation.status == cuda::CUDA_SUCCESS);
  const std::uint64_t base = reservation.result_as<wire::PointerResult>().pointer;
  REQUIRE(base != 0);
  const auto created = owner.call(RequestKind::kVmmCreate, wire::VmmCreateRequest{bytes, 0, 0, 0});
  REQUIRE(created.status == cuda::CUDA_SUCCESS);
  const std::uint64_t allocation = created.result_as<std::uint64_t>();
  REQUIRE(owner.call(RequestKind::kVmmMap, wire::VmmMapRequest{base, bytes, 0, allocation, 0}).status ==
          cuda::CUDA_SUCCESS);
  CHECK(owner.totals().device_bytes == before.device_bytes + bytes);

  // Mapped without access: not yet memory a copy may touch. With access: copies in and out.
  const auto data = pattern(bytes, 7);
  CHECK(owner.upload(base, data) == cuda::CUDA_ERROR_INVALID_VALUE);
  wire::VmmAccessRequest access{};
  access.pointer = base;
  access.size = bytes;
  access.count = 1;
  access.descriptors[0].location_type = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
  access.descriptors[0].device = 0;
  access.descriptors[0].flags = cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  REQUIRE(owner.call(RequestKind::kVmmSetAccess, access).status == cuda::CUDA_SUCCESS);
  CHECK(owner.upload(base, data) == cuda::CUDA_SUCCESS);
  const std::uint64_t plain = owner.alloc(bytes);
  CHECK(owner.call(RequestKind::kCopyDeviceToDevice, wire::CopyRequest{plain, base, bytes, 0}).status ==
        cuda::CUDA_SUCCESS);
  std::vector<std::byte> back(bytes);
  CHECK(owner.download(back, plain) == cuda::CUDA_SUCCESS);
  CHECK(back == data);
  std::fill(back.begin(), back.end(), std::byte{0});
  CHECK(owner.download(back, base) == cuda::CUDA_SUCCESS);
  CHECK(back == data);
  CHECK(owner.download(back, base + bytes - 16) == cuda::CUDA_ERROR_INVALID_VALUE);  // past the mapped end

  // Another session can neither copy nor change the mapping; the owner's allocation id means
  // nothing in its session, and the owner's reservation is not its to map into or free.
  std::vector<std::byte> stolen(bytes);
  CHECK(intruder.download(stolen, base) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(stolen == std::vector<std::byte>(bytes));  // zeros, not the owner's bytes
  CHECK(intruder.upload(base, pattern(bytes, 8)) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(intruder.call(RequestKind::kVmmSetAccess, access).status == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(intruder.call(RequestKind::kVmmUnmap, wire::VmmRangeRequest{base, bytes}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(intruder.call(RequestKind::kVmmRelease, wire::HandleRequest{allocation}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(intruder.call(RequestKind::kVmmMap, wire::VmmMapRequest{base + bytes, granule, 0, allocation, 0}).status ==
        cuda::CUDA_ERROR_INVALID_HANDLE);
  const auto its_own = intruder.call(RequestKind::kVmmCreate, wire::VmmCreateRequest{granule, 0, 0, 0});
  REQUIRE(its_own.status == cuda::CUDA_SUCCESS);
  const std::uint64_t intruder_allocation = its_own.result_as<std::uint64_t>();
  CHECK(intruder.call(RequestKind::kVmmMap, wire::VmmMapRequest{base, granule, 0, intruder_allocation, 0}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);  // over the owner's mapping
  CHECK(intruder.call(RequestKind::kVmmMap, wire::VmmMapRequest{base + bytes, granule, 0, intruder_allocation, 0})
            .status == cuda::CUDA_ERROR_INVALID_VALUE);  // into the unmapped rest of the owner's reservation
  CHECK(intruder.call(RequestKind::kVmmAddressFree, wire::VmmRangeRequest{base, reserved}).status ==
        cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(intruder.call(RequestKind::kVmmRelease, wire::HandleRequest{intruder_allocation}).status ==
        cuda::CUDA_SUCCESS);
  CHECK(owner.download(back, base) == cuda::CUDA_SUCCESS);
  CHECK(back == data);  // the owner's bytes, untouched

  // Released while mapped (as ggml does): the mapping keeps the memory until it is unmapped.
  CHECK(owner.call(RequestKind::kVmmRelease, wire::HandleRequest{allocation}).status == cuda::CUDA_SUCCESS);
  CHECK(owner.totals().device_bytes == before.device_bytes + 2 * bytes);  // the mapping and `plain`
  CHECK(owner.download(back, base) == cuda::CUDA_SUCCESS);
  CHECK(back == data);
  CHECK(owner.call(RequestKind::kVmmUnmap, wire::VmmRangeRequest{base, bytes}).status == cuda::CUDA_SUCCESS);
  CHECK(owner.download(back, base) == cuda::CUDA_ERROR_INVALID_VALUE);
  CHECK(owner.call(RequestKind::kVmmAddressFree, wire::VmmRangeRequest{base, reserved}).status == cuda::CUDA_SUCCESS);
  CHECK(owner.free(plain) == cuda::CUDA_SUCCESS);
  const wire::BrokerTotals after = owner.totals();
  CHECK(after.device_bytes == before.device_bytes);
  CHECK(after.allocations == before.allocations);
}
