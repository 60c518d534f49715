// A session's cuBLAS handles and its cuBLASLt handle, and the BLAS calls that run on them.
//
// Every matrix a call touches is checked against the session's memory before cuBLAS sees it.
// Arrays of device pointers (batched GEMM, TRSM) live in the client's device memory, which the
// client can still write (a kernel queued before the GEMM, another thread's copy): so they are
// read in stream order, every pointer they hold is checked, and cuBLAS is handed the broker's own
// device copy of what was checked, never the client's arrays. Statuses are cublasStatus_t values.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
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
  // A BLAS-1 call: its result's bytes (dot, nrm2, asum, amax, amin in host pointer mode), else 0.
  Outcome<std::uint64_t> vector(CallContext& call, const wire::BlasVectorRequest& request);
  Outcome<wire::NoReply> lu_batched(CallContext& call, const wire::BlasLuRequest& request);

 private:
  // The broker's device copy of a call's checked pointer arrays, reused by the handle's next call
  // once the call that read it is done (`done`, recorded after it on its stream).
  struct ArrayCopy {
    std::optional<OwnedBrokerMemory> device;
    std::uint64_t capacity = 0;        // bytes of `device`
    std::vector<std::uint64_t> host;   // the source of the last upload, kept until it is done
    std::optional<OwnedEvent> done;
    bool in_use = false;
  };
  struct Handle {
    OwnedBlasHandle owner;
    const DeviceContext* context;  // of the device current when it was made: its work runs there
    const BlasCalls* blas;         // that context's cuBLAS
    ArrayCopy arrays;
    std::uint64_t stream = 0;  // the session stream its work goes to (cublasSetStream; 0 at first)
    // The workspace the client set (cublasSetWorkspace), with the serial of the session's memory
    // it lies in (DeviceSession::memory_serial), checked again whenever the session's memory
    // epoch has moved since: a workspace freed since is taken from cuBLAS before it computes, so
    // it never writes into memory the address has been given to since.
    std::uint64_t workspace = 0;
    std::uint64_t workspace_bytes = 0;
    std::uint64_t workspace_serial = 0;
    std::uint64_t workspace_epoch = 0;
  };
  // Takes a freed workspace from the handle (see Handle); false when cuBLAS refused to let go.
  bool keep_workspace_current(Handle& handle);
  Lookup<Handle*> handle_for(std::uint64_t id);
  [[nodiscard]] bool operand(const DeviceContext& on, std::uint64_t pointer, std::uint64_t bytes) const;
  int run_gemm(const wire::BlasGemmRequest& r, Handle& handle);
  int run_trsm_batched(const wire::BlasTrsmRequest& r, Handle& handle);
  int run_vector(const wire::BlasVectorRequest& r, Handle& handle, std::uint64_t& result);
  int run_lu_batched(const wire::BlasLuRequest& r, Handle& handle);
  // Uploads `pointers` (checked) into the handle's array copy in `stream` order; the copy's device
  // address, or 0 when the upload could not be queued. After the call that reads it is queued,
  // release_arrays() marks it.
  cuda::CUdeviceptr upload_arrays(Handle& handle, std::vector<std::uint64_t> pointers, cuda::CUstream stream);
  void release_arrays(Handle& handle, cuda::CUstream stream);
  int run_lt_matmul(const wire::BlasLtMatmulRequest& r);
  Outcome<wire::NoReply> transfer_matrix(CallContext& call, const wire::BlasMatrixRequest& r, bool to_device);
  // The most matrices one pointer-array call may name: the broker holds three host and device
  // copies of its arrays (24 bytes a matrix), so a client cannot make it hold gigabytes.
  static constexpr int kMaxPointerArrayBatch = 1 << 20;
  // Reads `count` device pointers from each of `arrays` (the session's memory) in `stream` order,
  // one array after the other into `out`. The status to fail with, or success.
  int read_pointer_arrays(const DeviceContext& context, std::span<const std::uint64_t> arrays, int count,
                          cuda::CUstream stream, std::vector<std::uint64_t>& out);

  DeviceSession& session_;
  std::unordered_map<std::uint64_t, Handle> handles_;
  // The session's cuBLASLt handle of each device, made on first use there.
  std::vector<std::optional<OwnedLtHandle>> lt_;
};

}  // namespace gpubroker::broker
