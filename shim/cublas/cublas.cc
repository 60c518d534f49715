// The cuBLAS entry points the shim serves, remoted at the cuBLAS API (DESIGN.md, "Libraries above
// the runtime"): the broker owns the real handles and calls the real library (or the sim's).
//
// A cublasHandle_t given to the program is a session-local id, never a broker pointer; the
// settings a program can read back (stream, pointer and math mode, workspace) are kept here as
// well, so that the getters never leave the process. Streams are the runtime shim's session-local
// ids (0, cudaStreamLegacy and cudaStreamPerThread are the session's default stream), passed on
// verbatim.
//
// Scalars: in host pointer mode (the default, and what ggml uses) alpha and beta travel by value
// inside the request; in device pointer mode the shim reads them from device memory first, in the
// handle's stream order. Every GEMM of the family becomes one wire::BlasGemmRequest: cublasSgemm_v2
// and cublasHgemm are cublasGemmEx with fixed types, cublasSgemmBatched the pointer-array form
// (the arrays live in device memory, and the broker checks every entry against the session's
// allocations), cublasSgemmStridedBatched the strided form.
//
// The BLAS-1 functions (axpy, scal, dot, nrm2, asum, amax, amin, copy, swap) of S and D, of the
// handle API and of the legacy one (cublas.h, on one handle of the process), are each one
// wire::BlasVectorRequest; the broker runs them through cuBLAS's *Ex forms.
//
// Built twice, as libcublas.so.12 and libcublas.so.13 (GPUBROKER_CUBLAS_ABI = 12 or 13).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/cublas_api.h"
#include "shim/abi/unsupported.h"
#include "shim/client/calls.h"
#include "shim/client/connection.h"
#include "shim/client/operations.h"
#include "shim/cublas/legacy.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using cuda::cublasStatus_t;

extern "C" int cublasCreate_v2(void** handle);  // below; the legacy API's handle is made with it

namespace {

using Status = int;  // cublasStatus_t at the C ABI
using Handle = void*;  // cublasHandle_t
using Stream = void*;  // cudaStream_t

constexpr Status kSuccess = cuda::CUBLAS_STATUS_SUCCESS;
constexpr Status kNotInitialized = cuda::CUBLAS_STATUS_NOT_INITIALIZED;
constexpr Status kInvalidValue = cuda::CUBLAS_STATUS_INVALID_VALUE;
constexpr Status kExecutionFailed = cuda::CUBLAS_STATUS_EXECUTION_FAILED;

struct HandleState {
  std::uint64_t stream = 0;
  int pointer_mode = cuda::CUBLAS_POINTER_MODE_HOST;
  int math_mode = cuda::CUBLAS_DEFAULT_MATH;
  int atomics_mode = 0;  // CUBLAS_ATOMICS_NOT_ALLOWED
  std::uint64_t workspace = 0;
  std::uint64_t workspace_bytes = 0;
};

// The process's handles. Any thread; each call holds the lock only to read or update a copy.
class Handles {
 public:
  std::uint64_t add() {
    const std::uint64_t id = shim::new_object_id();  // unique among every shim's objects
    std::lock_guard guard(lock_);
    states_[id] = HandleState{};
    return id;
  }
  void remove(std::uint64_t id) {
    std::lock_guard guard(lock_);
    states_.erase(id);
  }
  bool get(std::uint64_t id, HandleState& state) const {
    std::lock_guard guard(lock_);
    auto it = states_.find(id);
    if (it == states_.end()) return false;
    state = it->second;
    return true;
  }
  template <class F>
  bool update(std::uint64_t id, F&& change) {
    std::lock_guard guard(lock_);
    auto it = states_.find(id);
    if (it == states_.end()) return false;
    change(it->second);
    return true;
  }

 private:
  mutable std::mutex lock_;
  std::unordered_map<std::uint64_t, HandleState> states_;
};

Handles& handles() {
  static Handles* h = new Handles();  // never destroyed: calls may come during exit
  return *h;
}

std::uint64_t id_of(Handle handle) { return reinterpret_cast<std::uint64_t>(handle); }

// A setting kept in the shim alone: the handle's `field` = `value` where `valid`.
Status keep_setting(Handle handle, int value, bool valid, int HandleState::*field) {
  if (!handles().update(id_of(handle), [&](HandleState& h) {
        if (valid) h.*field = value;
      })) {
    return kNotInitialized;
  }
  return valid ? kSuccess : kInvalidValue;
}

// A getter answered in the process: *out = the handle's `field`.
Status read_setting(Handle handle, int* out, int HandleState::*field) {
  HandleState state;
  if (!handles().get(id_of(handle), state)) return kNotInitialized;
  if (out == nullptr) return kInvalidValue;
  *out = state.*field;
  return kSuccess;
}

// One synchronous request; the completion's status is the cublasStatus_t.
template <wire::RequestKind Kind>
Status request(const shim::PayloadOf<Kind>& payload) {
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  auto answer = shim::call<Kind>(c->session(), payload);
  if (!answer) return kExecutionFailed;  // the broker is gone
  return answer.value().status;
}

// Bytes of one alpha or beta in a compute type's representation.
std::size_t scalar_bytes(int compute_type) {
  switch (compute_type) {
    case cuda::CUBLAS_COMPUTE_16F:
    case cuda::CUBLAS_COMPUTE_16F_PEDANTIC:
      return 2;
    case cuda::CUBLAS_COMPUTE_64F:
    case cuda::CUBLAS_COMPUTE_64F_PEDANTIC:
    case cuda::CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
      return 8;
    default:
      return 4;
  }
}

// Reads a scalar as the handle's pointer mode says: from host memory, or from device memory in the
// handle's stream order.
Status read_scalar(const HandleState& state, const void* scalar, std::size_t bytes, std::uint8_t (&out)[8]) {
  std::memset(out, 0, sizeof out);
  if (scalar == nullptr) return kInvalidValue;
  if (state.pointer_mode == cuda::CUBLAS_POINTER_MODE_HOST) {
    std::memcpy(out, scalar, bytes);
    return kSuccess;
  }
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  const wire::CopyRequest copy{0, reinterpret_cast<std::uint64_t>(scalar), bytes, state.stream};
  auto reply = shim::call<wire::RequestKind::kCopyDeviceToHost>(c->session(), copy,
                                                                std::span(reinterpret_cast<std::byte*>(out), bytes));
  if (!reply) return kExecutionFailed;
  return reply.value().status == 0 ? kSuccess : kInvalidValue;
}

bool valid_operation(int op) { return op == cuda::CUBLAS_OP_N || op == cuda::CUBLAS_OP_T || op == cuda::CUBLAS_OP_C; }

struct Gemm {
  int transa, transb, m, n, k;
  const void* alpha;
  const void* a;
  int a_type, lda;
  const void* b;
  int b_type, ldb;
  const void* beta;
  const void* c;
  int c_type, ldc;
  int compute_type, algo;
  wire::GemmVariant variant = wire::GemmVariant::kSingle;
  long long stride_a = 0, stride_b = 0, stride_c = 0;
  int batch_count = 1;
  bool beta_on_host = false;  // beta is the shim's own constant, whatever the pointer mode (ger)
};

Status gemm(Handle handle, const Gemm& g) {
  HandleState state;
  if (!handles().get(id_of(handle), state)) return kNotInitialized;
  if (!valid_operation(g.transa) || !valid_operation(g.transb) || g.m < 0 || g.n < 0 || g.k < 0 || g.batch_count < 0) {
    return kInvalidValue;
  }
  if (g.m == 0 || g.n == 0 || g.batch_count == 0) return kSuccess;  // nothing to compute, as cuBLAS does
  wire::BlasGemmRequest r{};
  r.handle = id_of(handle);
  r.transa = g.transa;
  r.transb = g.transb;
  r.m = g.m;
  r.n = g.n;
  r.k = g.k;
  r.a_type = g.a_type;
  r.b_type = g.b_type;
  r.c_type = g.c_type;
  r.compute_type = g.compute_type;
  r.algo = g.algo;
  r.lda = g.lda;
  r.ldb = g.ldb;
  r.ldc = g.ldc;
  r.batch_count = g.batch_count;
  r.variant = static_cast<std::uint32_t>(g.variant);
  r.a = reinterpret_cast<std::uint64_t>(g.a);
  r.b = reinterpret_cast<std::uint64_t>(g.b);
  r.c = reinterpret_cast<std::uint64_t>(g.c);
  r.stride_a = g.stride_a;
  r.stride_b = g.stride_b;
  r.stride_c = g.stride_c;
  const std::size_t bytes = scalar_bytes(g.compute_type);
  if (Status s = read_scalar(state, g.alpha, bytes, r.alpha); s != kSuccess) return s;
  HandleState beta_from = state;
  if (g.beta_on_host) beta_from.pointer_mode = cuda::CUBLAS_POINTER_MODE_HOST;
  if (Status s = read_scalar(beta_from, g.beta, bytes, r.beta); s != kSuccess) return s;
  return request<wire::RequestKind::kBlasGemm>(r);
}

// One BLAS-1 call (wire::BlasVectorRequest). alpha is read as the pointer mode says and travels by
// value; a result comes back in the reply (host pointer mode), or the broker writes it to the
// program's device memory in the handle's stream order (device pointer mode).
struct VectorCall {
  wire::BlasVectorFunction function;
  int type;  // cudaDataType: CUDA_R_32F or CUDA_R_64F
  int n;
  const void* x;
  int incx;
  const void* y = nullptr;
  int incy = 0;
  const void* alpha = nullptr;  // axpy, scal
  void* result = nullptr;       // dot, nrm2, asum, amax, amin
};

Status vector(Handle handle, const VectorCall& v) {
  using F = wire::BlasVectorFunction;
  HandleState state;
  if (!handles().get(id_of(handle), state)) return kNotInitialized;
  const bool scaled = v.function == F::kAxpy || v.function == F::kScal;
  const bool answers = v.function == F::kDot || v.function == F::kNrm2 || v.function == F::kAsum ||
                       v.function == F::kAmax || v.function == F::kAmin;
  if (answers && v.result == nullptr) return kInvalidValue;
  wire::BlasVectorRequest r{};
  r.handle = id_of(handle);
  r.function = static_cast<std::uint32_t>(v.function);
  r.type = v.type;
  r.n = v.n;
  r.incx = v.incx;
  r.incy = v.incy;
  r.x = reinterpret_cast<std::uint64_t>(v.x);
  r.y = reinterpret_cast<std::uint64_t>(v.y);
  const std::size_t element = v.type == cuda::CUDA_R_64F ? sizeof(double) : sizeof(float);
  if (scaled) {
    if (Status s = read_scalar(state, v.alpha, element, r.alpha); s != kSuccess) return s;
  }
  const bool on_device = answers && state.pointer_mode == cuda::CUBLAS_POINTER_MODE_DEVICE;
  if (on_device) r.result = reinterpret_cast<std::uint64_t>(v.result);
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  auto answer = shim::call<wire::RequestKind::kBlasVector>(c->session(), r);
  if (!answer) return kExecutionFailed;  // the broker is gone
  if (answer.value().status == kSuccess && answers && !on_device) {
    const bool index = v.function == F::kAmax || v.function == F::kAmin;
    std::memcpy(v.result, &answer.value().reply, index ? sizeof(int) : element);
  }
  return answer.value().status;
}

// The legacy API's functions (cublas.h) run on one handle of the process, made on first use (or by
// cublasInit), on the default stream in host pointer mode; their status goes to cublasGetError.
std::atomic<std::uint64_t> g_legacy_handle{0};
std::mutex g_legacy_lock;

Handle legacy_handle() {
  if (std::uint64_t id = g_legacy_handle.load(std::memory_order_acquire); id != 0) return reinterpret_cast<Handle>(id);
  std::lock_guard guard(g_legacy_lock);
  if (g_legacy_handle.load(std::memory_order_relaxed) == 0) {
    Handle made = nullptr;
    if (cublasCreate_v2(&made) == kSuccess) g_legacy_handle.store(id_of(made), std::memory_order_release);
  }
  return reinterpret_cast<Handle>(g_legacy_handle.load(std::memory_order_relaxed));
}

// A legacy call's status for cublasGetError.
void legacy(Status status) { shim::record_legacy_status(status); }

// A legacy function with a result: `call` fills it through the pointer it is given.
template <class T, class Call>
T legacy_result(Call&& call) {
  T out{};
  legacy(call(&out));
  return out;
}

// cublas?gemv as a GEMM: y^T (1 x rows) = alpha x^T (1 x columns) op(A)^T + beta y^T, with x and y
// one-row matrices whose leading dimensions are their increments, so the broker checks and cuBLAS
// computes it as any GEMM. cuBLAS refuses a zero increment; a negative one (the vector walked from
// its far end) has no such form, and is answered CUBLAS_STATUS_NOT_SUPPORTED with its name logged.
Status gemv(const char* name, Handle handle, int trans, int m, int n, const void* alpha, const void* a, int lda,
            const void* x, int incx, const void* beta, void* y, int incy, int type, int compute) {
  if (!valid_operation(trans) || m < 0 || n < 0 || lda < std::max(1, m) || incx == 0 || incy == 0) return kInvalidValue;
  if (incx < 0 || incy < 0) {
    gpubroker_log_unsupported_in(name, "cuBLAS", "CUBLAS_STATUS_NOT_SUPPORTED (a negative increment)");
    return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const bool plain = trans == cuda::CUBLAS_OP_N;
  const int rows = plain ? m : n, columns = plain ? n : m;
  return gemm(handle, Gemm{cuda::CUBLAS_OP_N, plain ? cuda::CUBLAS_OP_T : cuda::CUBLAS_OP_N, 1, rows, columns, alpha, x,
                           type, incx, a, type, lda, beta, y, type, incy, compute, cuda::CUBLAS_GEMM_DEFAULT});
}

// cublas?ger as a GEMM of depth 1: A (m x n) = alpha x y^T + 1 A, x a 1 x m matrix transposed and y
// a 1 x n one, leading dimensions their increments (negative ones as for gemv).
Status ger(const char* name, Handle handle, int m, int n, const void* alpha, const void* x, int incx, const void* y,
           int incy, void* a, int lda, const void* one, int type, int compute) {
  if (m < 0 || n < 0 || lda < std::max(1, m) || incx == 0 || incy == 0) return kInvalidValue;
  if (incx < 0 || incy < 0) {
    gpubroker_log_unsupported_in(name, "cuBLAS", "CUBLAS_STATUS_NOT_SUPPORTED (a negative increment)");
    return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  }
  Gemm g{cuda::CUBLAS_OP_T, cuda::CUBLAS_OP_N, m, n, 1, alpha, x, type, incx, y, type, incy, one, a, type, lda, compute,
         cuda::CUBLAS_GEMM_DEFAULT};
  g.beta_on_host = true;
  return gemm(handle, g);
}

// The batched LU functions: the arrays of matrices, the pivots and getrf's and getri's infos live
// in device memory; the broker reads the arrays and checks what they name. getrs's info is the
// caller's host int, which cuBLAS sets to 0 or to minus the position of a bad argument.
Status lu_batched(Handle handle, wire::BlasLuRequest r) {
  HandleState state;
  if (!handles().get(id_of(handle), state)) return kNotInitialized;
  r.handle = id_of(handle);
  return request<wire::RequestKind::kBlasLuBatched>(r);
}

std::uint64_t address(const void* pointer) { return reinterpret_cast<std::uint64_t>(pointer); }

Status getrs_batched(Handle handle, int trans, int type, int n, int nrhs, const void* a_array, int lda, const int* pivots,
                     const void* b_array, int ldb, int* info, int batch) {
  if (info == nullptr) return kInvalidValue;
  // cuBLAS's argument order: the first bad one's position, negated.
  const int bad = !valid_operation(trans) ? 2 : n < 0 ? 3 : nrhs < 0 ? 4 : lda < std::max(1, n) ? 6
                  : ldb < std::max(1, n) ? 9 : batch < 0 ? 11 : 0;
  *info = -bad;
  if (bad != 0) return kInvalidValue;
  using F = wire::BlasLuFunction;
  return lu_batched(handle, {0, static_cast<std::uint32_t>(F::kGetrs), type, trans, n, nrhs, lda, ldb, batch,
                             address(a_array), address(b_array), address(pivots), 0});
}

// cublas?trsmBatched (the arrays of A and B pointers live in device memory; the broker reads and
// checks them) and cublas?trsm_v2 (the matrices themselves: the broker makes the arrays of one).
Status trsm(Handle handle, wire::TrsmVariant variant, int type, int side, int uplo, int trans, int diag, int m, int n,
            const void* alpha, const void* a, int lda, const void* b, int ldb, int batch_count) {
  HandleState state;
  if (!handles().get(id_of(handle), state)) return kNotInitialized;
  if (!valid_operation(trans) || m < 0 || n < 0 || batch_count < 0) return kInvalidValue;
  wire::BlasTrsmRequest r{};
  r.handle = id_of(handle);
  r.side = side;
  r.uplo = uplo;
  r.trans = trans;
  r.diag = diag;
  r.m = m;
  r.n = n;
  r.lda = lda;
  r.ldb = ldb;
  r.batch_count = batch_count;
  r.type = type;
  r.a = reinterpret_cast<std::uint64_t>(a);
  r.b = reinterpret_cast<std::uint64_t>(b);
  r.variant = static_cast<std::uint32_t>(variant);
  if (Status s = read_scalar(state, alpha, type == cuda::CUDA_R_64F ? 8 : 4, r.alpha); s != kSuccess) return s;
  return request<wire::RequestKind::kBlasTrsmBatched>(r);
}

}  // namespace

// cublasSetMatrix/GetMatrix and the Vector forms: a column-major matrix between host memory
// (leading dimension host_ld) and device memory (device_ld), in elements of element_bytes. It
// crosses the staging pipe packed, one column after another; a vector is a matrix of one row
// whose leading dimensions are its increments. cuBLAS's own checks first.
Status transfer_matrix(std::int64_t rows, std::int64_t cols, std::int64_t element_bytes, void* host, std::int64_t host_ld,
                       std::uint64_t device, std::int64_t device_ld, Stream stream, bool to_device) {
  // A leading dimension below the row count would overlap the columns (vectors: one row, any increment).
  if (rows < 0 || cols < 0 || element_bytes <= 0 || host_ld <= 0 || device_ld <= 0 || host_ld < rows || device_ld < rows) {
    return kInvalidValue;
  }
  if (rows == 0 || cols == 0) return kSuccess;
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  const auto column = static_cast<std::size_t>(rows * element_bytes);
  const auto packed_bytes = column * static_cast<std::size_t>(cols);
  const bool contiguous = host_ld == rows;
  auto* base = static_cast<std::byte*>(host);
  std::vector<std::byte> packed;
  if (!contiguous) packed.resize(packed_bytes);
  auto host_column = [&](std::int64_t j) { return base + static_cast<std::size_t>(j * host_ld * element_bytes); };
  const wire::BlasMatrixRequest r{device, reinterpret_cast<std::uint64_t>(stream), rows, cols, device_ld,
                                  static_cast<std::int32_t>(element_bytes), 0};
  if (to_device) {
    for (std::int64_t j = 0; !contiguous && j < cols; ++j) std::memcpy(packed.data() + j * column, host_column(j), column);
    auto reply = shim::call<wire::RequestKind::kBlasSetMatrix>(
        c->session(), r, std::span<const std::byte>(contiguous ? base : packed.data(), packed_bytes));
    return reply ? reply.value().status : cuda::CUBLAS_STATUS_MAPPING_ERROR;
  }
  auto reply = shim::call<wire::RequestKind::kBlasGetMatrix>(c->session(), r,
                                                             std::span<std::byte>(contiguous ? base : packed.data(), packed_bytes));
  if (!reply) return cuda::CUBLAS_STATUS_MAPPING_ERROR;
  if (reply.value().status == kSuccess) {
    for (std::int64_t j = 0; !contiguous && j < cols; ++j) std::memcpy(host_column(j), packed.data() + j * column, column);
  }
  return reply.value().status;
}

extern "C" {

// ---- handles and settings -------------------------------------------------------------------

int cublasCreate_v2(Handle* handle) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  if (handle == nullptr) GPUBROKER_TRACE_RETURN(kInvalidValue);
  const std::uint64_t id = handles().add();
  const Status s = request<wire::RequestKind::kBlasCreate>(wire::HandleRequest{id});
  if (s != kSuccess) {
    handles().remove(id);
    GPUBROKER_TRACE_RETURN(s);
  }
  *handle = reinterpret_cast<Handle>(id);
  GPUBROKER_TRACE_RETURN(kSuccess);
}

int cublasDestroy_v2(Handle handle) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  HandleState state;
  if (!handles().get(id_of(handle), state)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  handles().remove(id_of(handle));
  GPUBROKER_TRACE_RETURN(request<wire::RequestKind::kBlasDestroy>(wire::HandleRequest{id_of(handle)}));
}

int cublasSetStream_v2(Handle handle, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  HandleState state;
  if (!handles().get(id_of(handle), state)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  const auto id = reinterpret_cast<std::uint64_t>(stream);
  const Status s = request<wire::RequestKind::kBlasSetStream>(wire::BlasSettingRequest{id_of(handle), id});
  if (s == kSuccess) handles().update(id_of(handle), [&](HandleState& h) { h.stream = id; });
  GPUBROKER_TRACE_RETURN(s);
}

int cublasGetStream_v2(Handle handle, Stream* stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  HandleState state;
  if (!handles().get(id_of(handle), state)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  if (stream == nullptr) GPUBROKER_TRACE_RETURN(kInvalidValue);
  *stream = reinterpret_cast<Stream>(state.stream);
  GPUBROKER_TRACE_RETURN(kSuccess);
}

int cublasSetMathMode(Handle handle, int mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  HandleState state;
  if (!handles().get(id_of(handle), state)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  const Status s = request<wire::RequestKind::kBlasSetMathMode>(wire::BlasSettingRequest{id_of(handle), static_cast<std::uint64_t>(static_cast<std::uint32_t>(mode))});
  if (s == kSuccess) handles().update(id_of(handle), [&](HandleState& h) { h.math_mode = mode; });
  GPUBROKER_TRACE_RETURN(s);
}

int cublasGetMathMode(Handle handle, int* mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(read_setting(handle, mode, &HandleState::math_mode));
}

int cublasSetWorkspace_v2(Handle handle, void* workspace, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  HandleState state;
  if (!handles().get(id_of(handle), state)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  if (workspace == nullptr && bytes != 0) GPUBROKER_TRACE_RETURN(kInvalidValue);
  const auto pointer = reinterpret_cast<std::uint64_t>(workspace);
  const Status s = request<wire::RequestKind::kBlasSetWorkspace>(wire::BlasWorkspaceRequest{id_of(handle), pointer, bytes});
  if (s == kSuccess) {
    handles().update(id_of(handle), [&](HandleState& h) {
      h.workspace = pointer;
      h.workspace_bytes = bytes;
    });
  }
  GPUBROKER_TRACE_RETURN(s);
}

// The broker always runs its handles in host pointer mode (scalars arrive by value); the mode the
// program chose decides where the shim reads them.
int cublasSetPointerMode_v2(Handle handle, int mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      keep_setting(handle, mode, mode == cuda::CUBLAS_POINTER_MODE_HOST || mode == cuda::CUBLAS_POINTER_MODE_DEVICE,
                   &HandleState::pointer_mode));
}

int cublasGetPointerMode_v2(Handle handle, int* mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(read_setting(handle, mode, &HandleState::pointer_mode));
}

// The atomics mode only lets cuBLAS pick non-deterministic algorithms for a few functions; the
// broker's handles keep the default (not allowed), which computes the same results, so the mode
// is kept here for the getter.
int cublasSetAtomicsMode(Handle handle, int mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(keep_setting(handle, mode, mode == 0 || mode == 1, &HandleState::atomics_mode));
}

int cublasGetAtomicsMode(Handle handle, int* mode) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(read_setting(handle, mode, &HandleState::atomics_mode));
}

// ---- GEMMs ----------------------------------------------------------------------------------

int cublasGemmEx(Handle handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* a,
                 int a_type, int lda, const void* b, int b_type, int ldb, const void* beta, void* c, int c_type,
                 int ldc, int compute_type, int algo) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa, transb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta, c,
                                           c_type, ldc, compute_type, algo}));
}

int cublasGemmStridedBatchedEx(Handle handle, int transa, int transb, int m, int n, int k, const void* alpha,
                               const void* a, int a_type, int lda, long long stride_a, const void* b, int b_type,
                               int ldb, long long stride_b, const void* beta, void* c, int c_type, int ldc,
                               long long stride_c, int batch_count, int compute_type, int algo) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa,
                                           transb,
                                           m,
                                           n,
                                           k,
                                           alpha,
                                           a,
                                           a_type,
                                           lda,
                                           b,
                                           b_type,
                                           ldb,
                                           beta,
                                           c,
                                           c_type,
                                           ldc,
                                           compute_type,
                                           algo,
                                           wire::GemmVariant::kStridedBatched,
                                           stride_a,
                                           stride_b,
                                           stride_c,
                                           batch_count}));
}

int cublasGemmBatchedEx(Handle handle, int transa, int transb, int m, int n, int k, const void* alpha,
                        const void* const* a_array, int a_type, int lda, const void* const* b_array, int b_type,
                        int ldb, const void* beta, void* const* c_array, int c_type, int ldc, int batch_count,
                        int compute_type, int algo) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa,
                                           transb,
                                           m,
                                           n,
                                           k,
                                           alpha,
                                           a_array,
                                           a_type,
                                           lda,
                                           b_array,
                                           b_type,
                                           ldb,
                                           beta,
                                           c_array,
                                           c_type,
                                           ldc,
                                           compute_type,
                                           algo,
                                           wire::GemmVariant::kPointerArrays,
                                           0,
                                           0,
                                           0,
                                           batch_count}));
}

int cublasHgemm(Handle handle, int transa, int transb, int m, int n, int k, const cuda::HalfBits* alpha,
                const cuda::HalfBits* a, int lda, const cuda::HalfBits* b, int ldb, const cuda::HalfBits* beta,
                cuda::HalfBits* c, int ldc) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      gemm(handle, Gemm{transa, transb, m, n, k, alpha, a, cuda::CUDA_R_16F, lda, b, cuda::CUDA_R_16F, ldb, beta, c,
                        cuda::CUDA_R_16F, ldc, cuda::CUBLAS_COMPUTE_16F, cuda::CUBLAS_GEMM_DEFAULT}));
}

// The typed GEMMs, one row per element type: cublasSgemm_v2 and cublasDgemm_v2 are cublasGemmEx
// with fixed types, the Batched forms its pointer-array form, the StridedBatched ones its strided
// form; gemv and ger are GEMMs too (gemv() and ger() above).
// X(upper, element type, cudaDataType, cublasComputeType_t)
#define GPUBROKER_GEMM_TYPES(X)                           \
  X(S, float, cuda::CUDA_R_32F, cuda::CUBLAS_COMPUTE_32F) \
  X(D, double, cuda::CUDA_R_64F, cuda::CUBLAS_COMPUTE_64F)

#define GPUBROKER_GEMM_ENTRIES(U, T, type, compute)                                                                    \
  int cublas##U##gemm_v2(Handle handle, int transa, int transb, int m, int n, int k, const T* alpha, const T* a,       \
                         int lda, const T* b, int ldb, const T* beta, T* c, int ldc) {                                 \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa, transb, m, n, k, alpha, a, type, lda, b, type, ldb, beta, c,      \
                                             type, ldc, compute, cuda::CUBLAS_GEMM_DEFAULT}));                         \
  }                                                                                                                    \
  int cublas##U##gemmBatched(Handle handle, int transa, int transb, int m, int n, int k, const T* alpha,               \
                             const T* const* a_array, int lda, const T* const* b_array, int ldb, const T* beta,        \
                             T* const* c_array, int ldc, int batch_count) {                                            \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa, transb, m, n, k, alpha, a_array, type, lda, b_array, type,        \
                                             ldb, beta, c_array, type, ldc, compute, cuda::CUBLAS_GEMM_DEFAULT,        \
                                             wire::GemmVariant::kPointerArrays, 0, 0, 0, batch_count}));               \
  }                                                                                                                    \
  int cublas##U##gemmStridedBatched(Handle handle, int transa, int transb, int m, int n, int k, const T* alpha,        \
                                    const T* a, int lda, long long stride_a, const T* b, int ldb, long long stride_b,  \
                                    const T* beta, T* c, int ldc, long long stride_c, int batch_count) {               \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(gemm(handle, Gemm{transa, transb, m, n, k, alpha, a, type, lda, b, type, ldb, beta,         \
                                             c, type, ldc, compute, cuda::CUBLAS_GEMM_DEFAULT,                         \
                                             wire::GemmVariant::kStridedBatched, stride_a, stride_b, stride_c,         \
                                             batch_count}));                                                           \
  }                                                                                                                    \
  int cublas##U##gemv_v2(Handle handle, int trans, int m, int n, const T* alpha, const T* a, int lda, const T* x,      \
                         int incx, const T* beta, T* y, int incy) {                                                    \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        gemv("cublas" #U "gemv_v2", handle, trans, m, n, alpha, a, lda, x, incx, beta, y, incy, type, compute));       \
  }                                                                                                                    \
  int cublas##U##getrfBatched(Handle handle, int n, T* const* a_array, int lda, int* pivots, int* info, int batch) {   \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        lu_batched(handle, {0, static_cast<std::uint32_t>(wire::BlasLuFunction::kGetrf), type, 0, n, 0, lda, 0, batch, \
                            address(a_array), 0, address(pivots), address(info)}));                                    \
  }                                                                                                                    \
  int cublas##U##getrsBatched(Handle handle, int trans, int n, int nrhs, const T* const* a_array, int lda,             \
                              const int* pivots, T* const* b_array, int ldb, int* info, int batch) {                   \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        getrs_batched(handle, trans, type, n, nrhs, a_array, lda, pivots, b_array, ldb, info, batch));                 \
  }                                                                                                                    \
  int cublas##U##getriBatched(Handle handle, int n, const T* const* a_array, int lda, const int* pivots,               \
                              T* const* c_array, int ldc, int* info, int batch) {                                      \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        lu_batched(handle, {0, static_cast<std::uint32_t>(wire::BlasLuFunction::kGetri), type, 0, n, 0, lda, ldc,      \
                            batch, address(a_array), address(c_array), address(pivots), address(info)}));              \
  }                                                                                                                    \
  int cublas##U##trsm_v2(Handle handle, int side, int uplo, int trans, int diag, int m, int n, const T* alpha,         \
                         const T* a, int lda, T* b, int ldb) {                                                         \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        trsm(handle, wire::TrsmVariant::kSingle, type, side, uplo, trans, diag, m, n, alpha, a, lda, b, ldb, 1));      \
  }                                                                                                                    \
  int cublas##U##trsmBatched(Handle handle, int side, int uplo, int trans, int diag, int m, int n, const T* alpha,     \
                             const T* const* a_array, int lda, T* const* b_array, int ldb, int batch_count) {          \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    GPUBROKER_TRACE_RETURN(trsm(handle, wire::TrsmVariant::kPointerArrays, type, side, uplo, trans, diag, m, n, alpha, \
                                a_array, lda, b_array, ldb, batch_count));                                             \
  }                                                                                                                    \
  int cublas##U##ger_v2(Handle handle, int m, int n, const T* alpha, const T* x, int incx, const T* y, int incy, T* a, \
                        int lda) {                                                                                     \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                    \
    static constexpr T kOne = 1;                                                                                       \
    GPUBROKER_TRACE_RETURN(                                                                                            \
        ger("cublas" #U "ger_v2", handle, m, n, alpha, x, incx, y, incy, a, lda, &kOne, type, compute));               \
  }

GPUBROKER_GEMM_TYPES(GPUBROKER_GEMM_ENTRIES)
#undef GPUBROKER_GEMM_ENTRIES
#undef GPUBROKER_GEMM_TYPES

// ---- BLAS-1: the typed functions of both APIs, one row per element type ----------------------

// X(upper, lower, element type, cudaDataType): cublasSaxpy_v2, cublasIsamax_v2, cublasSdot, ...
#define GPUBROKER_BLAS1_TYPES(X)   \
  X(S, s, float, cuda::CUDA_R_32F) \
  X(D, d, double, cuda::CUDA_R_64F)

using F = wire::BlasVectorFunction;

#define GPUBROKER_BLAS1_ENTRIES(U, l, T, type)                                                                     \
  int cublas##U##axpy_v2(Handle h, int n, const T* alpha, const T* x, int incx, T* y, int incy) {                  \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kAxpy, type, n, x, incx, y, incy, alpha}));                               \
  }                                                                                                                \
  int cublas##U##scal_v2(Handle h, int n, const T* alpha, T* x, int incx) {                                        \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kScal, type, n, x, incx, nullptr, 0, alpha}));                            \
  }                                                                                                                \
  int cublas##U##dot_v2(Handle h, int n, const T* x, int incx, const T* y, int incy, T* result) {                  \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kDot, type, n, x, incx, y, incy, nullptr, result}));                      \
  }                                                                                                                \
  int cublas##U##nrm2_v2(Handle h, int n, const T* x, int incx, T* result) {                                       \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kNrm2, type, n, x, incx, nullptr, 0, nullptr, result}));                  \
  }                                                                                                                \
  int cublas##U##asum_v2(Handle h, int n, const T* x, int incx, T* result) {                                       \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kAsum, type, n, x, incx, nullptr, 0, nullptr, result}));                  \
  }                                                                                                                \
  int cublasI##l##amax_v2(Handle h, int n, const T* x, int incx, int* result) {                                    \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kAmax, type, n, x, incx, nullptr, 0, nullptr, result}));                  \
  }                                                                                                                \
  int cublasI##l##amin_v2(Handle h, int n, const T* x, int incx, int* result) {                                    \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kAmin, type, n, x, incx, nullptr, 0, nullptr, result}));                  \
  }                                                                                                                \
  int cublas##U##copy_v2(Handle h, int n, const T* x, int incx, T* y, int incy) {                                  \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kCopy, type, n, x, incx, y, incy}));                                      \
  }                                                                                                                \
  int cublas##U##swap_v2(Handle h, int n, T* x, int incx, T* y, int incy) {                                        \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    GPUBROKER_TRACE_RETURN(vector(h, {F::kSwap, type, n, x, incx, y, incy}));                                      \
  }                                                                                                                \
  /* The legacy forms: alpha by value, results returned, status for cublasGetError. */                             \
  void cublas##U##axpy(int n, T alpha, const T* x, int incx, T* y, int incy) {                                     \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    legacy(cublas##U##axpy_v2(legacy_handle(), n, &alpha, x, incx, y, incy));                                      \
  }                                                                                                                \
  void cublas##U##scal(int n, T alpha, T* x, int incx) {                                                           \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    legacy(cublas##U##scal_v2(legacy_handle(), n, &alpha, x, incx));                                               \
  }                                                                                                                \
  T cublas##U##dot(int n, const T* x, int incx, const T* y, int incy) {                                            \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    return legacy_result<T>([&](T* out) { return cublas##U##dot_v2(legacy_handle(), n, x, incx, y, incy, out); }); \
  }                                                                                                                \
  T cublas##U##nrm2(int n, const T* x, int incx) {                                                                 \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    return legacy_result<T>([&](T* out) { return cublas##U##nrm2_v2(legacy_handle(), n, x, incx, out); });         \
  }                                                                                                                \
  T cublas##U##asum(int n, const T* x, int incx) {                                                                 \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    return legacy_result<T>([&](T* out) { return cublas##U##asum_v2(legacy_handle(), n, x, incx, out); });         \
  }                                                                                                                \
  int cublasI##l##amax(int n, const T* x, int incx) {                                                              \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    return legacy_result<int>([&](int* out) { return cublasI##l##amax_v2(legacy_handle(), n, x, incx, out); });    \
  }                                                                                                                \
  int cublasI##l##amin(int n, const T* x, int incx) {                                                              \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    return legacy_result<int>([&](int* out) { return cublasI##l##amin_v2(legacy_handle(), n, x, incx, out); });    \
  }                                                                                                                \
  void cublas##U##copy(int n, const T* x, int incx, T* y, int incy) {                                              \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    legacy(cublas##U##copy_v2(legacy_handle(), n, x, incx, y, incy));                                              \
  }                                                                                                                \
  void cublas##U##swap(int n, T* x, int incx, T* y, int incy) {                                                    \
    GPUBROKER_TRACE_ENTRY(kCublas);                                                                                \
    legacy(cublas##U##swap_v2(legacy_handle(), n, x, incx, y, incy));                                              \
  }

GPUBROKER_BLAS1_TYPES(GPUBROKER_BLAS1_ENTRIES)
#undef GPUBROKER_BLAS1_ENTRIES
#undef GPUBROKER_BLAS1_TYPES

// cublasInit makes the legacy API's handle (which its functions otherwise make on first use);
// cublasShutdown destroys it.
int cublasInit() {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(legacy_handle() != nullptr ? kSuccess : kNotInitialized);
}

int cublasShutdown() {
  GPUBROKER_TRACE_ENTRY(kCublas);
  std::lock_guard guard(g_legacy_lock);
  const std::uint64_t id = g_legacy_handle.exchange(0, std::memory_order_acq_rel);
  GPUBROKER_TRACE_RETURN(id == 0 ? kSuccess : cublasDestroy_v2(reinterpret_cast<Handle>(id)));
}


// ---- host <-> device transfers of matrices and vectors (the legacy default stream, or `stream`) ----

int cublasSetMatrix(int rows, int cols, int element, const void* a, int lda, void* b, int ldb) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(rows, cols, element, const_cast<void*>(a), lda,
                                         reinterpret_cast<std::uint64_t>(b), ldb, nullptr, true));
}
int cublasGetMatrix(int rows, int cols, int element, const void* a, int lda, void* b, int ldb) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(rows, cols, element, b, ldb, reinterpret_cast<std::uint64_t>(a), lda, nullptr, false));
}
int cublasSetMatrixAsync(int rows, int cols, int element, const void* a, int lda, void* b, int ldb, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(rows, cols, element, const_cast<void*>(a), lda,
                                         reinterpret_cast<std::uint64_t>(b), ldb, stream, true));
}
int cublasGetMatrixAsync(int rows, int cols, int element, const void* a, int lda, void* b, int ldb, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(rows, cols, element, b, ldb, reinterpret_cast<std::uint64_t>(a), lda, stream, false));
}
int cublasSetVector(int n, int element, const void* x, int incx, void* y, int incy) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(1, n, element, const_cast<void*>(x), incx, reinterpret_cast<std::uint64_t>(y),
                                         incy, nullptr, true));
}
int cublasGetVector(int n, int element, const void* x, int incx, void* y, int incy) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(1, n, element, y, incy, reinterpret_cast<std::uint64_t>(x), incx, nullptr, false));
}
int cublasSetVectorAsync(int n, int element, const void* x, int incx, void* y, int incy, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(1, n, element, const_cast<void*>(x), incx, reinterpret_cast<std::uint64_t>(y),
                                         incy, stream, true));
}
int cublasGetVectorAsync(int n, int element, const void* x, int incx, void* y, int incy, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(1, n, element, y, incy, reinterpret_cast<std::uint64_t>(x), incx, stream, false));
}
int cublasSetMatrix_64(std::int64_t rows, std::int64_t cols, std::int64_t element, const void* a, std::int64_t lda, void* b,
                       std::int64_t ldb) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(rows, cols, element, const_cast<void*>(a), lda,
                                         reinterpret_cast<std::uint64_t>(b), ldb, nullptr, true));
}
int cublasGetMatrix_64(std::int64_t rows, std::int64_t cols, std::int64_t element, const void* a, std::int64_t lda, void* b,
                       std::int64_t ldb) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(rows, cols, element, b, ldb, reinterpret_cast<std::uint64_t>(a), lda, nullptr, false));
}
int cublasSetMatrixAsync_64(std::int64_t rows, std::int64_t cols, std::int64_t element, const void* a, std::int64_t lda,
                            void* b, std::int64_t ldb, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(rows, cols, element, const_cast<void*>(a), lda,
                                         reinterpret_cast<std::uint64_t>(b), ldb, stream, true));
}
int cublasGetMatrixAsync_64(std::int64_t rows, std::int64_t cols, std::int64_t element, const void* a, std::int64_t lda,
                            void* b, std::int64_t ldb, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(rows, cols, element, b, ldb, reinterpret_cast<std::uint64_t>(a), lda, stream, false));
}
int cublasSetVector_64(std::int64_t n, std::int64_t element, const void* x, std::int64_t incx, void* y, std::int64_t incy) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(1, n, element, const_cast<void*>(x), incx, reinterpret_cast<std::uint64_t>(y),
                                         incy, nullptr, true));
}
int cublasGetVector_64(std::int64_t n, std::int64_t element, const void* x, std::int64_t incx, void* y, std::int64_t incy) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(1, n, element, y, incy, reinterpret_cast<std::uint64_t>(x), incx, nullptr, false));
}
int cublasSetVectorAsync_64(std::int64_t n, std::int64_t element, const void* x, std::int64_t incx, void* y,
                            std::int64_t incy, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(transfer_matrix(1, n, element, const_cast<void*>(x), incx, reinterpret_cast<std::uint64_t>(y),
                                         incy, stream, true));
}
int cublasGetVectorAsync_64(std::int64_t n, std::int64_t element, const void* x, std::int64_t incx, void* y,
                            std::int64_t incy, Stream stream) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(
      transfer_matrix(1, n, element, y, incy, reinterpret_cast<std::uint64_t>(x), incx, stream, false));
}

}  // extern "C"
