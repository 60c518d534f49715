// A session's cuBLAS handles and its cuBLASLt handle, and the BLAS calls that run on them.
//
// Every matrix a call touches is checked against the session's memory before cuBLAS sees it;
// arrays of device pointers (batched GEMM, TRSM) are read in stream order and each pointer they
// hold is checked too. Statuses are cublasStatus_t values.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "broker/call.h"
#include "broker/owned.h"
#include "gpubroker/cuda/cublaslt_abi.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionBlas {
 public:
  explicit SessionBlas(DeviceSession& session);

  // ---- Handlers (rows of area `blas`) ----
  Outcome<wire::NoReply> create(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> destroy(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> set_stream(CallContext& call, const wire::BlasSettingRequest& request);
  Outcome<wire::NoReply> set_math_mode(CallContext& call, const wire::BlasSettingRequest& request);
  Outcome<wire::NoReply> set_workspace(CallContext& call, const wire::BlasWorkspaceRequest& request);
  Outcome<wire::NoReply> gemm(CallContext& call, const wire::BlasGemmRequest& request);
  Outcome<wire::NoReply> trsm_batched(CallContext& call, const wire::BlasTrsmRequest& request);
  Outcome<wire::NoReply> lt_matmul(CallContext& call, const wire::BlasLtMatmulRequest& request);
  Outcome<wire::NoReply> set_matrix(CallContext& call, const wire::BlasMatrixRequest& request);
  Outcome<wire::NoReply> get_matrix(CallContext& call, const wire::BlasMatrixRequest& request);

 private:
  struct Handle {
    OwnedBlasHandle owner;
    const DeviceContext* context;  // of the device current when it was made: its work runs there
    const BlasCalls* blas;         // that context's cuBLAS
  };
  Lookup<const Handle*> handle_for(std::uint64_t id) const;
  int run_gemm(const wire::BlasGemmRequest& r, const Handle& handle);
  int run_trsm_batched(const wire::BlasTrsmRequest& r, const Handle& handle);
  int run_lt_matmul(const wire::BlasLtMatmulRequest& r);
  Outcome<wire::NoReply> transfer_matrix(CallContext& call, const wire::BlasMatrixRequest& r, bool to_device);
  // Reads `count` device pointers from the session's memory at `array`, in `stream` order.
  bool read_pointer_array(const DeviceContext& context, std::uint64_t array, int count, cuda::CUstream stream,
                          std::vector<std::uint64_t>& out);

  DeviceSession& session_;
  std::unordered_map<std::uint64_t, Handle> handles_;
  // The session's cuBLASLt handle of each device, made on first use there.
  std::vector<std::optional<OwnedLtHandle>> lt_;
};

}  // namespace gpubroker::broker
