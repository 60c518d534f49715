// The broker's cuBLAS area (broker/session_blas.*) through a real gpu-broker process on the sim
// driver: GEMMs on a session's handle, and the checks on the memory they touch.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/driver_api.h"
#include "tests/support/broker_process.h"
#include "tests/support/device_client.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::DeviceClient;
using testing::TempDir;
using testing::pattern;

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

TEST_CASE("a cuBLAS workspace freed since it was set is never written: the GEMM runs without it, and the memory's "
          "next owner keeps its bytes",
          "[broker][blas][hostile]") {
  TempDir dir;
  BrokerProcess broker(dir);
  DeviceClient client(broker.socket_path()), victim(broker.socket_path());
  const std::vector<float> a = {1, 4, 2, 5, 3, 6}, b = {7, 9, 11, 8, 10, 12}, expected = {58, 139, 64, 154};
  const std::uint64_t da = client.alloc(24), db = client.alloc(24), dc = client.alloc(16);
  REQUIRE(client.upload(da, std::as_bytes(std::span(a))) == 0);
  REQUIRE(client.upload(db, std::as_bytes(std::span(b))) == 0);
  REQUIRE(client.call(wire::RequestKind::kBlasCreate, wire::HandleRequest{1}).status == 0);
  constexpr std::uint64_t kWorkspace = 1 << 16;
  const std::uint64_t workspace = client.alloc(kWorkspace);
  REQUIRE(client.upload(workspace, std::vector<std::byte>(kWorkspace)) == 0);
  CHECK(client.call(wire::RequestKind::kBlasSetWorkspace, wire::BlasWorkspaceRequest{1, workspace, kWorkspace}).status ==
        0);
  CHECK(client.call(wire::RequestKind::kBlasSetWorkspace, wire::BlasWorkspaceRequest{1, dc, kWorkspace}).status ==
        cuda::CUBLAS_STATUS_INVALID_VALUE);  // not that much memory there
  wire::BlasGemmRequest gemm{};
  gemm.handle = 1;
  gemm.transa = gemm.transb = cuda::CUBLAS_OP_N;
  gemm.m = 2, gemm.n = 2, gemm.k = 3;
  gemm.a_type = gemm.b_type = gemm.c_type = cuda::CUDA_R_32F;
  gemm.compute_type = cuda::CUBLAS_COMPUTE_32F;
  gemm.algo = -1;
  gemm.lda = 2, gemm.ldb = 3, gemm.ldc = 2, gemm.batch_count = 1;
  gemm.variant = static_cast<std::uint32_t>(wire::GemmVariant::kSingle);
  gemm.a = da, gemm.b = db, gemm.c = dc;
  const float one = 1.0f, zero = 0.0f;
  std::memcpy(gemm.alpha, &one, sizeof(one));
  std::memcpy(gemm.beta, &zero, sizeof(zero));
  auto gemm_result = [&] {
    REQUIRE(client.call(wire::RequestKind::kBlasGemm, gemm).status == cuda::CUBLAS_STATUS_SUCCESS);
    std::vector<float> c(4);
    REQUIRE(client.download(std::as_writable_bytes(std::span(c)), dc) == 0);  // 0: no fault since
    return c;
  };
  CHECK(gemm_result() == expected);
  std::vector<std::byte> scratch(256);
  REQUIRE(client.download(scratch, workspace) == 0);
  CHECK(scratch != std::vector<std::byte>(256));  // the GEMM used its workspace

  REQUIRE(client.free(workspace) == 0);
  std::vector<std::uint64_t> taken;
  for (int i = 0; i < 4; ++i) {
    taken.push_back(victim.alloc(kWorkspace));
    REQUIRE(victim.upload(taken.back(), pattern(kWorkspace, 50 + i)) == 0);
  }
  CHECK(gemm_result() == expected);
  std::vector<std::byte> back(kWorkspace);
  for (int i = 0; i < 4; ++i) {
    REQUIRE(victim.download(back, taken[i]) == 0);
    CHECK(back == pattern(kWorkspace, 50 + i));
  }
}
