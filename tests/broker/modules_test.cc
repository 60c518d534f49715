// The broker's modules (broker/session_modules.*) through a real gpu-broker process on the sim
// driver: loading fatbins, functions and their attributes, and the module cache shared between
// sessions.
#include <catch2/catch.hpp>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::env_or;

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

namespace {

// The broker's resident memory, from /proc.
std::uint64_t resident_bytes(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  REQUIRE(f != nullptr);
  char line[256];
  std::uint64_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %lu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib * 1024;
}

}  // namespace

TEST_CASE("module images count against the session's host memory limit, and an announced image is held only as "
          "its bytes arrive",
          "[broker][module][hostile]") {
  const std::vector<std::byte> kernels = read_test_file("fatbin/kernels_sm90_zstd.fatbin");
  TempDir dir;
  // Room for two copies of the image and a little more, not three.
  const std::uint64_t limit = 2 * kernels.size() + kernels.size() / 2;
  BrokerProcess broker(dir, {.arguments = {"--log-level=error", "--session-host-memory-limit=" + std::to_string(limit)},
                             .environment = {}});
  DeviceClient client(broker.socket_path()), other(broker.socket_path());
  CHECK(load_function(client, kernels, 1, "_Z9no_paramsv", 1) == cuda::CUDA_SUCCESS);
  CHECK(load_function(client, kernels, 2, "_Z9no_paramsv", 2) == cuda::CUDA_SUCCESS);
  CHECK(load_function(client, kernels, 3, "_Z9no_paramsv", 3) == cuda::CUDA_ERROR_OUT_OF_MEMORY);
  CHECK(load_function(other, kernels, 1, "_Z9no_paramsv", 1) == cuda::CUDA_SUCCESS);  // per session
  CHECK(client.call(wire::RequestKind::kModuleUnload, wire::HandleRequest{1}).status == 0);
  CHECK(load_function(client, kernels, 3, "_Z9no_paramsv", 3) == cuda::CUDA_SUCCESS);  // room again

  // An object larger than the limit is drained from the pipe unkept: the broker never holds it, and
  // the session goes on.
  const std::uint64_t before = resident_bytes(broker.pid());
  const std::vector<std::byte> large(256u << 20, std::byte{0x5a});
  CHECK(load_function(client, large, 4, "_Z9no_paramsv", 4) == cuda::CUDA_ERROR_OUT_OF_MEMORY);
  const std::uint64_t after = resident_bytes(broker.pid());
  INFO("broker resident before " << before << ", after " << after);
  CHECK(after < before + (64u << 20));
  CHECK(client.alloc(4096) != 0);
}
