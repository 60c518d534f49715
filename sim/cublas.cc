// libgpubroker-sim.so's cuBLAS: the subset of gpubroker/cuda/cublas_api.h, computed on the CPU,
// and of cuBLASLt (gpubroker/cuda/cublaslt_abi.h) the matmul with its epilogues, the same GEMM.
//
// Every exported function is extern "C" with exactly the type the X-macro list gives it (checked
// at the end of this file), so that the broker resolves it with dlsym as it resolves libcublas.
//
// Model:
// - A handle is an id, never reused, checked against a live table: NULL, destroyed and made-up
//   handles get CUBLAS_STATUS_NOT_INITIALIZED. It holds its stream, math mode, pointer mode and
//   workspace. cublasCreate needs cuInit and a current context; a handle left on the NULL stream
//   uses the NULL stream of the calling thread's current context at each call.
// - Every GEMM and TRSM is an operation on the handle's stream (sim/blas.h): ordered with the
//   stream's copies and kernels, recorded into the graph while the stream captures, computed by
//   the stream's worker. Host-mode alpha/beta are read at the call, device-mode ones when the
//   operation runs, as with the GPU.
// - Argument checks follow cuBLAS: negative sizes, leading dimensions below max(1, rows), unknown
//   enum values and negative batch counts are CUBLAS_STATUS_INVALID_VALUE; type and compute-type
//   combinations the library lacks are CUBLAS_STATUS_NOT_SUPPORTED. Outside a capture the device
//   ranges the call can see are checked too (CUBLAS_STATUS_INVALID_VALUE); a stream that cannot
//   take the work (unknown, its sticky error, an invalidated capture) gives
//   CUBLAS_STATUS_EXECUTION_FAILED. Memory the operation finds bad when it runs faults the stream
//   (CUDA_ERROR_ILLEGAL_ADDRESS), as a GPU fault would.
// - The math mode and the algorithm are accepted and kept; every mode computes in float, and
//   CUBLAS_COMPUTE_64F in double.
//
// Threads: any function from any thread; one mutex guards the handle table and is never held
// while calling the driver.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/cublaslt_abi.h"
#include "sim/blas.h"
#include "sim/counters.h"
#include "sim/driver_access.h"
#include "sim/operations.h"
#include "sim/stream.h"

#define GPUBROKER_SIM_API __attribute__((visibility("default")))

using namespace gpubroker::cuda;  // NOLINT: the exported signatures use cuBLAS's names

namespace lt = gpubroker::cuda::lt;

namespace gpubroker::sim {
namespace {

constexpr int kCublasVersion = 130100;  // the cuBLAS of the CUDA 13.0 toolkit (cublas_api.h 13.1.0)
constexpr std::uintptr_t kHandleTag = 9;  // handle = 16 * id + tag, as the driver's handles
constexpr std::uintptr_t kWorkspaceAlignment = 256;

struct BlasHandle {
  CUstream stream = nullptr;
  cublasMath_t math_mode = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  std::uintptr_t workspace = 0;  // none: the library's own
  std::size_t workspace_bytes = 0;
};

struct Handles {
  std::mutex mutex;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, BlasHandle> live;
};

Handles& handles() {
  static auto* instance = new Handles;  // never destroyed, as the driver's tables
  return *instance;
}

std::uint64_t handle_id(cublasHandle_t handle) {
  const auto value = reinterpret_cast<std::uintptr_t>(handle);
  return value % 16 == kHandleTag ? value / 16 : 0;
}

// A copy of the handle's state; nullopt for an unknown handle.
std::optional<BlasHandle> handle_state(cublasHandle_t handle) {
  Handles& table = handles();
  std::lock_guard lock(table.mutex);
  auto found = table.live.find(handle_id(handle));
  if (found == table.live.end()) return std::nullopt;
  return found->second;
}

// Applies `change` to the live handle's state; CUBLAS_STATUS_NOT_INITIALIZED for an unknown one.
template <class Change>
cublasStatus_t update_handle(cublasHandle_t handle, Change&& change) {
  Handles& table = handles();
  std::lock_guard lock(table.mutex);
  auto found = table.live.find(handle_id(handle));
  if (found == table.live.end()) return CUBLAS_STATUS_NOT_INITIALIZED;
  change(found->second);
  return CUBLAS_STATUS_SUCCESS;
}

// A getter: *out = the handle's field.
template <class T>
cublasStatus_t read_field(cublasHandle_t handle, T* out, T BlasHandle::*field) {
  const std::optional<BlasHandle> state = handle_state(handle);
  if (!state) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (out == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *out = (*state).*field;
  return CUBLAS_STATUS_SUCCESS;
}

// No exception leaves an exported function.
template <class Body>
cublasStatus_t guarded(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return CUBLAS_STATUS_ALLOC_FAILED;
  } catch (...) {
    return CUBLAS_STATUS_INTERNAL_ERROR;
  }
}

bool operation_valid(cublasOperation_t operation) {
  return operation == CUBLAS_OP_N || operation == CUBLAS_OP_T || operation == CUBLAS_OP_C;
}

// The shape checks every GEMM makes: op(A) m x k, op(B) k x n, C m x n.
cublasStatus_t check_gemm_shape(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, int lda,
                                int ldb, int ldc) {
  if (!operation_valid(transa) || !operation_valid(transb)) return CUBLAS_STATUS_INVALID_VALUE;
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, transa == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldb < std::max(1, transb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

bool algorithm_valid(cublasGemmAlgo_t algo) {
  return (algo >= CUBLAS_GEMM_DEFAULT && algo <= CUBLAS_GEMM_ALGO23) ||
         (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP) ||
         algo == CUBLAS_GEMM_AUTOTUNE;
}

struct GemmTypes {
  ElementType a;
  ElementType b;
  ElementType c;
  ElementType scalar;
};

std::optional<ElementType> element_type(cudaDataType type) {
  switch (type) {
    case CUDA_R_32F: return ElementType::kFloat32;
    case CUDA_R_16F: return ElementType::kFloat16;
    case CUDA_R_16BF: return ElementType::kBfloat16;
    case CUDA_R_64F: return ElementType::kFloat64;
    default: return std::nullopt;
  }
}

// The *Ex GEMMs' type combinations that the sim computes, which are cuBLAS's real ones:
//   CUBLAS_COMPUTE_16F[_PEDANTIC]: A, B, C in CUDA_R_16F, half alpha/beta;
//   CUBLAS_COMPUTE_32F[_PEDANTIC]: A and B both 16F, 16BF or 32F, C the same type or 32F;
//   CUBLAS_COMPUTE_32F_FAST_16F/_16BF/_TF32, _EMULATED_16BFX9: A, B, C in CUDA_R_32F;
//   CUBLAS_COMPUTE_64F[_PEDANTIC]: A, B, C in CUDA_R_64F, double alpha/beta;
// float alpha/beta for the 32F compute types. Other known combinations (integer, complex, emulated FP64,
// FP8) are CUBLAS_STATUS_NOT_SUPPORTED; unknown compute types CUBLAS_STATUS_INVALID_VALUE.
cublasStatus_t gemm_types(cudaDataType a_type, cudaDataType b_type, cudaDataType c_type,
                          cublasComputeType_t compute_type, GemmTypes* types) {
  const auto a = element_type(a_type);
  const auto b = element_type(b_type);
  const auto c = element_type(c_type);
  const bool all_known = a && b && c;
  switch (compute_type) {
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC:
      if (!all_known || *a != ElementType::kFloat16 || *b != ElementType::kFloat16 || *c != ElementType::kFloat16)
        return CUBLAS_STATUS_NOT_SUPPORTED;
      *types = {*a, *b, *c, ElementType::kFloat16};
      return CUBLAS_STATUS_SUCCESS;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      if (!all_known || *a != *b || *a == ElementType::kFloat64 || (*c != *a && *c != ElementType::kFloat32))
        return CUBLAS_STATUS_NOT_SUPPORTED;
      *types = {*a, *b, *c, ElementType::kFloat32};
      return CUBLAS_STATUS_SUCCESS;
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_EMULATED_16BFX9:
      if (!all_known || *a != ElementType::kFloat32 || *b != ElementType::kFloat32 || *c != ElementType::kFloat32)
        return CUBLAS_STATUS_NOT_SUPPORTED;
      *types = {*a, *b, *c, ElementType::kFloat32};
      return CUBLAS_STATUS_SUCCESS;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
      if (!all_known || *a != ElementType::kFloat64 || *b != ElementType::kFloat64 || *c != ElementType::kFloat64)
        return CUBLAS_STATUS_NOT_SUPPORTED;
      *types = {*a, *b, *c, ElementType::kFloat64};
      return CUBLAS_STATUS_SUCCESS;
    case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC:
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

// The checks of the *Ex GEMMs before the shape's: the handle, the algorithm, the types.
cublasStatus_t check_ex(cublasHandle_t handle, cublasGemmAlgo_t algo, cudaDataType a_type, cudaDataType b_type,
                        cudaDataType c_type, cublasComputeType_t compute_type, GemmTypes* types) {
  if (!handle_state(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!algorithm_valid(algo)) return CUBLAS_STATUS_INVALID_VALUE;
  return gemm_types(a_type, b_type, c_type, compute_type, types);
}

// alpha/beta per the handle's pointer mode: values now (host), addresses for later (device).
BlasScalars scalars(const BlasHandle& state, ElementType type, const void* alpha, const void* beta) {
  BlasScalars out;
  out.type = type;
  out.on_device = state.pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
  if (out.on_device) {
    out.alpha_address = reinterpret_cast<std::uintptr_t>(alpha);
    out.beta_address = reinterpret_cast<std::uintptr_t>(beta);
    return out;
  }
  auto read = [type](const void* pointer) {
    return pointer == nullptr ? 0.0 : load_double(type, reinterpret_cast<std::uintptr_t>(pointer));
  };
  out.alpha = read(alpha);
  out.beta = read(beta);
  return out;
}

// Queues `operation` on the handle's stream after the checks only the call can make.
template <class Op, class RangesValid>
cublasStatus_t enqueue(const BlasHandle& state, Op operation, RangesValid ranges_valid) {
  std::shared_ptr<Stream> stream;
  if (find_stream(state.stream, &stream) != CUDA_SUCCESS) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (stream->capture_status() == CU_STREAM_CAPTURE_STATUS_NONE && !ranges_valid(operation))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (stream->submit(Operation{std::move(operation)}) != CUDA_SUCCESS) return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

// Every GEMM entry point: the handle, the shape, the batch, then the operation.
struct GemmCall {
  cublasHandle_t handle;
  cublasOperation_t transa;
  cublasOperation_t transb;
  int m;
  int n;
  int k;
  const void* alpha;
  const void* beta;
  BlasOperand a;
  BlasOperand b;
  BlasOperand c;
  int batch;
  ElementType scalar_type;
};

cublasStatus_t gemm(const GemmCall& call) {
  const std::optional<BlasHandle> state = handle_state(call.handle);
  if (!state) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (cublasStatus_t status = check_gemm_shape(call.transa, call.transb, call.m, call.n, call.k, call.a.ld, call.b.ld,
                                               call.c.ld);
      status != CUBLAS_STATUS_SUCCESS)
    return status;
  if (call.batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (call.m == 0 || call.n == 0 || call.batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (call.alpha == nullptr || call.beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  GemmOp op;
  op.transpose_a = call.transa != CUBLAS_OP_N;
  op.transpose_b = call.transb != CUBLAS_OP_N;
  op.m = call.m;
  op.n = call.n;
  op.k = call.k;
  op.batch = call.batch;
  op.a = call.a;
  op.b = call.b;
  op.c = call.c;
  op.scalars = scalars(*state, call.scalar_type, call.alpha, call.beta);
  op.workspace = state->workspace;
  op.workspace_bytes = state->workspace_bytes;
  return enqueue(*state, op, [](const GemmOp& queued) { return gemm_ranges_valid_at_call(queued); });
}

BlasOperand strided(const void* address, ElementType type, int ld, long long stride) {
  return {reinterpret_cast<std::uintptr_t>(address), type, ld, stride, false};
}

BlasOperand pointer_array(const void* array, ElementType type, int ld) {
  return {reinterpret_cast<std::uintptr_t>(array), type, ld, 0, true};
}

// Every BLAS-1 entry point (sim/blas.h, VectorOp): the handle, the types (float or double
// throughout, as the typed functions over the *Ex ones pass), the scalars per the handle's pointer
// mode, then the operation on the handle's stream. A result read in host pointer mode is the
// caller's variable, so the call waits for the operation, as cuBLAS does; such a call cannot be
// captured into a graph (the variable would be written at each replay, long after the call).
cublasStatus_t vector_call(cublasHandle_t handle, VectorOp op, std::initializer_list<cudaDataType> types,
                           const void* alpha, void* result) {
  const std::optional<BlasHandle> state = handle_state(handle);
  if (!state) return CUBLAS_STATUS_NOT_INITIALIZED;
  const cudaDataType type = *types.begin();
  if ((type != CUDA_R_32F && type != CUDA_R_64F) ||
      std::any_of(types.begin(), types.end(), [type](cudaDataType t) { return t != type; }))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  op.is_double = type == CUDA_R_64F;
  const bool on_device = state->pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
  const bool scaled = op.function == VectorFunction::kAxpy || op.function == VectorFunction::kScal;
  const bool answers = op.function == VectorFunction::kDot || op.function == VectorFunction::kNrm2 ||
                       op.function == VectorFunction::kAsum || op.function == VectorFunction::kAmax ||
                       op.function == VectorFunction::kAmin;
  if ((scaled && alpha == nullptr) || (answers && result == nullptr)) return CUBLAS_STATUS_INVALID_VALUE;
  if (scaled && on_device) {
    op.alpha_address = reinterpret_cast<std::uintptr_t>(alpha);
  } else if (scaled) {
    double value = 0.0;
    if (op.is_double) {
      std::memcpy(&value, alpha, sizeof value);
    } else {
      float narrow = 0.0f;
      std::memcpy(&narrow, alpha, sizeof narrow);
      value = narrow;
    }
    op.alpha = value;
  }
  if (answers) {
    op.result = reinterpret_cast<std::uintptr_t>(result);
    op.result_on_host = !on_device;
  }
  std::shared_ptr<Stream> stream;
  if (find_stream(state->stream, &stream) != CUDA_SUCCESS) return CUBLAS_STATUS_EXECUTION_FAILED;
  const bool capturing = stream->capture_status() != CU_STREAM_CAPTURE_STATUS_NONE;
  if (capturing && op.result_on_host) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!capturing && !vector_ranges_valid(op)) return CUBLAS_STATUS_INVALID_VALUE;
  if (stream->submit(Operation{op}) != CUDA_SUCCESS) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (op.result_on_host && stream->synchronize() != CUDA_SUCCESS) return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

VectorOp vector_op(VectorFunction function, int n, const void* x, int incx, const void* y = nullptr, int incy = 0) {
  return VectorOp{.function = function, .n = n, .x = reinterpret_cast<std::uintptr_t>(x), .incx = incx,
                  .y = reinterpret_cast<std::uintptr_t>(y), .incy = incy};
}

struct StatusText {
  cublasStatus_t status;
  const char* name;
  const char* description;
};

constexpr StatusText kStatusTexts[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE", "an unsupported value or parameter was passed"},
    {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH", "the device lacks a required architectural feature"},
    {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR", "an access to GPU memory space failed"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED", "the GPU program failed to execute"},
    {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal operation failed"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED", "the functionality requested is not supported"},
    {CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR", "the functionality requested requires a license"},
};

const StatusText* status_text(cublasStatus_t status) {
  for (const StatusText& text : kStatusTexts)
    if (text.status == status) return &text;
  return nullptr;
}


// ---- cuBLASLt -------------------------------------------------------------------------------------
//
// Handles are ids as cuBLAS handles are; descriptors are host objects, as in cuBLASLt. A matmul is
// a GemmOp on its stream (D apart from C, the bias and the activation of its epilogue), with the
// scalars read at the call: the descriptors' pointer mode is the host's.

constexpr std::uintptr_t kLtHandleTag = 10;

struct LtHandles {
  std::mutex mutex;
  std::uint64_t next_id = 1;
  std::unordered_set<std::uint64_t> live;
};

LtHandles& lt_handles() {
  static auto* instance = new LtHandles;  // never destroyed, as the driver's tables
  return *instance;
}

bool lt_handle_live(lt::cublasLtHandle_t handle) {
  const auto value = reinterpret_cast<std::uintptr_t>(handle);
  if (value % 16 != kLtHandleTag) return false;
  LtHandles& table = lt_handles();
  std::lock_guard lock(table.mutex);
  return table.live.count(value / 16) != 0;
}

struct LtDesc {
  cublasComputeType_t compute_type;
  cudaDataType_t scale_type;
  int pointer_mode = 0;
  int transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  std::uint32_t epilogue = lt::CUBLASLT_EPILOGUE_DEFAULT;
  std::uintptr_t bias = 0;
  int bias_type = -1;  // D's type
  std::int64_t bias_stride = 0;
};

struct LtLayout {
  cudaDataType type;
  std::uint64_t rows, cols;
  std::int64_t ld;
  int order = lt::CUBLASLT_ORDER_COL;
  int batch = 1;
  std::int64_t stride = 0;
};

LtDesc* desc_of(lt::cublasLtMatmulDesc_t desc) { return reinterpret_cast<LtDesc*>(desc); }
LtLayout* layout_of(lt::cublasLtMatrixLayout_t layout) { return reinterpret_cast<LtLayout*>(layout); }

// Copies an attribute of exactly sizeof(T) bytes into `field`.
template <class T>
cublasStatus_t set_exact(T& field, const void* buffer, std::size_t bytes) {
  if (buffer == nullptr || bytes != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buffer, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

// The activation of an epilogue the sim computes, and whether it adds the bias.
std::optional<Activation> activation_of(std::uint32_t epilogue, bool* bias) {
  *bias = (epilogue & lt::CUBLASLT_EPILOGUE_BIAS) != 0;
  switch (epilogue) {
    case lt::CUBLASLT_EPILOGUE_DEFAULT:
    case lt::CUBLASLT_EPILOGUE_BIAS:
      return Activation::kNone;
    case lt::CUBLASLT_EPILOGUE_RELU:
    case lt::CUBLASLT_EPILOGUE_RELU_BIAS:
      return Activation::kRelu;
    case lt::CUBLASLT_EPILOGUE_GELU:
    case lt::CUBLASLT_EPILOGUE_GELU_BIAS:
      return Activation::kGelu;
    default:
      return std::nullopt;  // the auxiliary-output and gradient epilogues
  }
}

bool layout_fits_int(const LtLayout& l) {
  return l.rows <= 0x7fffffffu && l.cols <= 0x7fffffffu && l.ld >= 0 && l.ld <= 0x7fffffff;
}

// Both types: the checks and the operation; `type` kFloat32 or kFloat64.
cublasStatus_t trsm_batched(ElementType type, cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                            cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const void* alpha,
                            const void* a_array, int lda, const void* b_array, int ldb, int batch_count) {
  const std::optional<BlasHandle> state = handle_state(handle);
  if (!state) return CUBLAS_STATUS_NOT_INITIALIZED;
  if ((side != CUBLAS_SIDE_LEFT && side != CUBLAS_SIDE_RIGHT) ||
      (uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) || !operation_valid(trans) ||
      (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m < 0 || n < 0 || batch_count < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, side == CUBLAS_SIDE_LEFT ? m : n) || ldb < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch_count == 0) return CUBLAS_STATUS_SUCCESS;
  if (alpha == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  TrsmOp op;
  op.type = type;
  op.left = side == CUBLAS_SIDE_LEFT;
  op.lower = uplo == CUBLAS_FILL_MODE_LOWER;
  op.transpose = trans != CUBLAS_OP_N;
  op.unit_diagonal = diag == CUBLAS_DIAG_UNIT;
  op.m = m;
  op.n = n;
  op.batch = batch_count;
  op.a_array = reinterpret_cast<std::uintptr_t>(a_array);
  op.lda = lda;
  op.b_array = reinterpret_cast<std::uintptr_t>(b_array);
  op.ldb = ldb;
  op.scalars = scalars(*state, type, alpha, nullptr);
  return enqueue(*state, op, [](const TrsmOp& queued) { return trsm_ranges_valid_at_call(queued); });
}

// ---- batched LU (sim/blas.h, LuOp) -------------------------------------------------------------

// Every batched LU entry point: the handle, cuBLAS's argument checks, then the operation. The
// typed forms differ only in the element type.
cublasStatus_t lu_call(cublasHandle_t handle, LuOp op) {
  const std::optional<BlasHandle> state = handle_state(handle);
  if (!state) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (op.n < 0 || op.nrhs < 0 || op.lda < std::max(1, op.n) || op.batch < 0 ||
      (op.function != LuFunction::kFactor && op.ldb < std::max(1, op.n)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (op.n == 0 || op.batch == 0 || (op.function == LuFunction::kSolve && op.nrhs == 0)) return CUBLAS_STATUS_SUCCESS;
  return enqueue(*state, op, [](const LuOp& queued) { return lu_ranges_valid_at_call(queued); });
}

std::uintptr_t address_of(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer); }

}  // namespace
}  // namespace gpubroker::sim

using namespace gpubroker::sim;  // NOLINT

extern "C" {

// ---- Handles -------------------------------------------------------------------------------------

GPUBROKER_SIM_API cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  return guarded([&] {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    if (!driver_initialized() || !context_current()) return CUBLAS_STATUS_NOT_INITIALIZED;
    Handles& table = handles();
    std::lock_guard lock(table.mutex);
    const std::uint64_t id = table.next_id++;
    table.live.emplace(id, BlasHandle{});
    count(counters().live_cublas_handles);
    *handle = reinterpret_cast<cublasHandle_t>(static_cast<std::uintptr_t>(id) * 16 + kHandleTag);
    return CUBLAS_STATUS_SUCCESS;
  });
}

// Queued work is not waited for: it no longer refers to the handle.
GPUBROKER_SIM_API cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  Handles& table = handles();
  std::lock_guard lock(table.mutex);
  if (table.live.erase(handle_id(handle)) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  uncount(counters().live_cublas_handles);
  return CUBLAS_STATUS_SUCCESS;
}

GPUBROKER_SIM_API cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version) {
  if (!handle_state(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (version == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *version = kCublasVersion;
  return CUBLAS_STATUS_SUCCESS;
}

// The stream is resolved at each call, not here (a stream destroyed meanwhile fails that call).
// As in cuBLAS, setting the stream drops a workspace set by cublasSetWorkspace.
GPUBROKER_SIM_API cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  return guarded([&] {
    return update_handle(handle, [&](BlasHandle& state) {
      state.stream = stream;
      state.workspace = 0;
      state.workspace_bytes = 0;
    });
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream) {
  return read_field(handle, stream, &BlasHandle::stream);
}

// A mode (default, tensor op, pedantic, TF32, the two emulations) or-ed with at most
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION.
GPUBROKER_SIM_API cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  return guarded([&] {
    if (!handle_state(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int base = mode & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    const bool known = base == CUBLAS_DEFAULT_MATH || base == CUBLAS_TENSOR_OP_MATH || base == CUBLAS_PEDANTIC_MATH ||
                       base == CUBLAS_TF32_TENSOR_OP_MATH || base == CUBLAS_FP32_EMULATED_BF16X9_MATH ||
                       base == CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH;
    if (!known) return CUBLAS_STATUS_INVALID_VALUE;
    return update_handle(handle, [&](BlasHandle& state) { state.math_mode = mode; });
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  return read_field(handle, mode, &BlasHandle::math_mode);
}

// NULL and 0 go back to the library's own workspace. Otherwise the workspace must be live device
// memory, aligned to 256 bytes. The sim computes without it; it is kept for the broker's checks.
GPUBROKER_SIM_API cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                                       std::size_t workspace_bytes) {
  return guarded([&] {
    if (!handle_state(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const auto address = reinterpret_cast<std::uintptr_t>(workspace);
    if (workspace_bytes != 0) {
      if (address % kWorkspaceAlignment != 0 || !device_range_valid(address, workspace_bytes, true))
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return update_handle(handle, [&](BlasHandle& state) {
      state.workspace = workspace_bytes == 0 ? 0 : address;
      state.workspace_bytes = workspace_bytes;
    });
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  return guarded([&] {
    if (!handle_state(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
    return update_handle(handle, [&](BlasHandle& state) { state.pointer_mode = mode; });
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode) {
  return read_field(handle, mode, &BlasHandle::pointer_mode);
}

// ---- GEMMs ---------------------------------------------------------------------------------------

GPUBROKER_SIM_API cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                                cublasOperation_t transb, int m, int n, int k, const float* alpha,
                                                const float* a, int lda, const float* b, int ldb, const float* beta,
                                                float* c, int ldc) {
  return guarded([&] {
    constexpr ElementType f32 = ElementType::kFloat32;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, strided(a, f32, lda, 0), strided(b, f32, ldb, 0),
                 strided(c, f32, ldc, 0), 1, f32});
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasHgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                             int m, int n, int k, const HalfBits* alpha, const HalfBits* a, int lda,
                                             const HalfBits* b, int ldb, const HalfBits* beta, HalfBits* c, int ldc) {
  return guarded([&] {
    constexpr ElementType f16 = ElementType::kFloat16;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, strided(a, f16, lda, 0), strided(b, f16, ldb, 0),
                 strided(c, f16, ldc, 0), 1, f16});
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                              cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                              const void* a, cudaDataType a_type, int lda, const void* b,
                                              cudaDataType b_type, int ldb, const void* beta, void* c,
                                              cudaDataType c_type, int ldc, cublasComputeType_t compute_type,
                                              cublasGemmAlgo_t algo) {
  return guarded([&] {
    GemmTypes types{};
    if (cublasStatus_t status = check_ex(handle, algo, a_type, b_type, c_type, compute_type, &types);
        status != CUBLAS_STATUS_SUCCESS)
      return status;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, strided(a, types.a, lda, 0),
                 strided(b, types.b, ldb, 0), strided(c, types.c, ldc, 0), 1, types.scalar});
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const void* alpha,
    const void* a, cudaDataType a_type, int lda, long long stride_a, const void* b, cudaDataType b_type, int ldb,
    long long stride_b, const void* beta, void* c, cudaDataType c_type, int ldc, long long stride_c, int batch_count,
    cublasComputeType_t compute_type, cublasGemmAlgo_t algo) {
  return guarded([&] {
    GemmTypes types{};
    if (cublasStatus_t status = check_ex(handle, algo, a_type, b_type, c_type, compute_type, &types);
        status != CUBLAS_STATUS_SUCCESS)
      return status;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, strided(a, types.a, lda, stride_a),
                 strided(b, types.b, ldb, stride_b), strided(c, types.c, ldc, stride_c), batch_count, types.scalar});
  });
}

// The three pointer arrays are in device memory and read when the GEMM runs.
GPUBROKER_SIM_API cublasStatus_t cublasGemmBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                                     cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                                     const void* const* a_array, cudaDataType a_type, int lda,
                                                     const void* const* b_array, cudaDataType b_type, int ldb,
                                                     const void* beta, void* const* c_array, cudaDataType c_type,
                                                     int ldc, int batch_count, cublasComputeType_t compute_type,
                                                     cublasGemmAlgo_t algo) {
  return guarded([&] {
    GemmTypes types{};
    if (cublasStatus_t status = check_ex(handle, algo, a_type, b_type, c_type, compute_type, &types);
        status != CUBLAS_STATUS_SUCCESS)
      return status;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, pointer_array(a_array, types.a, lda),
                 pointer_array(b_array, types.b, ldb), pointer_array(c_array, types.c, ldc), batch_count,
                 types.scalar});
  });
}

// The three pointer arrays are in device memory and read when the GEMM runs.
GPUBROKER_SIM_API cublasStatus_t cublasSgemmBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                    cublasOperation_t transb, int m, int n, int k, const float* alpha,
                                                    const float* const* a_array, int lda, const float* const* b_array,
                                                    int ldb, const float* beta, float* const* c_array, int ldc,
                                                    int batch_count) {
  return guarded([&] {
    constexpr ElementType f32 = ElementType::kFloat32;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, pointer_array(a_array, f32, lda),
                 pointer_array(b_array, f32, ldb), pointer_array(c_array, f32, ldc), batch_count, f32});
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                           cublasOperation_t transb, int m, int n, int k,
                                                           const float* alpha, const float* a, int lda,
                                                           long long stride_a, const float* b, int ldb,
                                                           long long stride_b, const float* beta, float* c, int ldc,
                                                           long long stride_c, int batch_count) {
  return guarded([&] {
    constexpr ElementType f32 = ElementType::kFloat32;
    return gemm({handle, transa, transb, m, n, k, alpha, beta, strided(a, f32, lda, stride_a),
                 strided(b, f32, ldb, stride_b), strided(c, f32, ldc, stride_c), batch_count, f32});
  });
}

// ---- Triangular solve ----------------------------------------------------------------------------

// X(upper, element type, ElementType): the batched TRSM of each real type.
#define GPUBROKER_SIM_TRSM_TYPES(X) X(S, float, ElementType::kFloat32) X(D, double, ElementType::kFloat64)
#define GPUBROKER_SIM_TRSM_EXPORT(U, T, type)                                                                       \
  GPUBROKER_SIM_API cublasStatus_t cublas##U##trsmBatched(                                                          \
      cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,                 \
      cublasDiagType_t diag, int m, int n, const T* alpha, const T* const* a_array, int lda, T* const* b_array,     \
      int ldb, int batch_count) {                                                                                   \
    return guarded([&] {                                                                                            \
      return trsm_batched(type, handle, side, uplo, trans, diag, m, n, alpha, a_array, lda, b_array, ldb,           \
                          batch_count);                                                                             \
    });                                                                                                             \
  }
GPUBROKER_SIM_TRSM_TYPES(GPUBROKER_SIM_TRSM_EXPORT)
#undef GPUBROKER_SIM_TRSM_EXPORT
#undef GPUBROKER_SIM_TRSM_TYPES

// X(upper, element type): the batched LU functions of each real type.
#define GPUBROKER_SIM_LU_TYPES(X) X(S, float) X(D, double)
#define GPUBROKER_SIM_LU_EXPORTS(U, T)                                                                                \
  GPUBROKER_SIM_API cublasStatus_t cublas##U##getrfBatched(cublasHandle_t handle, int n, T* const* a_array, int lda, \
                                                           int* pivots, int* info, int batch_count) {                \
    return guarded([&] {                                                                                              \
      return lu_call(handle, LuOp{.function = LuFunction::kFactor, .is_double = sizeof(T) == 8, .n = n,               \
                                  .batch = batch_count, .a_array = address_of(a_array), .lda = lda,                   \
                                  .pivots = address_of(pivots), .info = address_of(info)});                           \
    });                                                                                                               \
  }                                                                                                                   \
  GPUBROKER_SIM_API cublasStatus_t cublas##U##getrsBatched(cublasHandle_t handle, cublasOperation_t trans, int n,    \
                                                           int nrhs, const T* const* a_array, int lda,               \
                                                           const int* pivots, T* const* b_array, int ldb, int* info, \
                                                           int batch_count) {                                         \
    return guarded([&] {                                                                                              \
      if (info == nullptr) return CUBLAS_STATUS_INVALID_VALUE;                                                        \
      *info = 0;                                                                                                      \
      if (!operation_valid(trans)) return CUBLAS_STATUS_INVALID_VALUE;                                                \
      return lu_call(handle, LuOp{.function = LuFunction::kSolve, .is_double = sizeof(T) == 8,                        \
                                  .transpose = trans != CUBLAS_OP_N, .n = n, .nrhs = nrhs, .batch = batch_count,      \
                                  .a_array = address_of(a_array), .lda = lda, .b_array = address_of(b_array),         \
                                  .ldb = ldb, .pivots = address_of(pivots)});                                         \
    });                                                                                                               \
  }                                                                                                                   \
  GPUBROKER_SIM_API cublasStatus_t cublas##U##getriBatched(cublasHandle_t handle, int n, const T* const* a_array,    \
                                                           int lda, const int* pivots, T* const* c_array, int ldc,   \
                                                           int* info, int batch_count) {                             \
    return guarded([&] {                                                                                              \
      return lu_call(handle, LuOp{.function = LuFunction::kInvert, .is_double = sizeof(T) == 8, .n = n,               \
                                  .batch = batch_count, .a_array = address_of(a_array), .lda = lda,                   \
                                  .b_array = address_of(c_array), .ldb = ldc, .pivots = address_of(pivots),           \
                                  .info = address_of(info)});                                                         \
    });                                                                                                               \
  }
GPUBROKER_SIM_LU_TYPES(GPUBROKER_SIM_LU_EXPORTS)
#undef GPUBROKER_SIM_LU_EXPORTS
#undef GPUBROKER_SIM_LU_TYPES

// ---- BLAS-1 (the *Ex forms the broker calls for every type) --------------------------------------

GPUBROKER_SIM_API cublasStatus_t cublasAxpyEx(cublasHandle_t handle, int n, const void* alpha, cudaDataType alpha_type,
                                              const void* x, cudaDataType x_type, int incx, void* y,
                                              cudaDataType y_type, int incy, cudaDataType execution_type) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kAxpy, n, x, incx, y, incy),
                       {x_type, alpha_type, y_type, execution_type}, alpha, nullptr);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasScalEx(cublasHandle_t handle, int n, const void* alpha, cudaDataType alpha_type,
                                              void* x, cudaDataType x_type, int incx, cudaDataType execution_type) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kScal, n, x, incx), {x_type, alpha_type, execution_type},
                       alpha, nullptr);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasDotEx(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                             const void* y, cudaDataType y_type, int incy, void* result,
                                             cudaDataType result_type, cudaDataType execution_type) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kDot, n, x, incx, y, incy),
                       {x_type, y_type, result_type, execution_type}, nullptr, result);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasNrm2Ex(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                              void* result, cudaDataType result_type, cudaDataType execution_type) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kNrm2, n, x, incx), {x_type, result_type, execution_type},
                       nullptr, result);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasAsumEx(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                              void* result, cudaDataType result_type, cudaDataType execution_type) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kAsum, n, x, incx), {x_type, result_type, execution_type},
                       nullptr, result);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasIamaxEx(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                               int* result) {
  return guarded([&] { return vector_call(handle, vector_op(VectorFunction::kAmax, n, x, incx), {x_type}, nullptr, result); });
}

GPUBROKER_SIM_API cublasStatus_t cublasIaminEx(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                               int* result) {
  return guarded([&] { return vector_call(handle, vector_op(VectorFunction::kAmin, n, x, incx), {x_type}, nullptr, result); });
}

GPUBROKER_SIM_API cublasStatus_t cublasCopyEx(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx,
                                              void* y, cudaDataType y_type, int incy) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kCopy, n, x, incx, y, incy), {x_type, y_type}, nullptr, nullptr);
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasSwapEx(cublasHandle_t handle, int n, void* x, cudaDataType x_type, int incx, void* y,
                                              cudaDataType y_type, int incy) {
  return guarded([&] {
    return vector_call(handle, vector_op(VectorFunction::kSwap, n, x, incx, y, incy), {x_type, y_type}, nullptr, nullptr);
  });
}

// ---- Status text ---------------------------------------------------------------------------------

// Never NULL: an unknown status gets "<unknown>" and "unknown error".
GPUBROKER_SIM_API const char* cublasGetStatusString(cublasStatus_t status) {
  const StatusText* text = status_text(status);
  return text == nullptr ? "unknown error" : text->description;
}

GPUBROKER_SIM_API const char* cublasGetStatusName(cublasStatus_t status) {
  const StatusText* text = status_text(status);
  return text == nullptr ? "<unknown>" : text->name;
}

// ---- cuBLASLt ---------------------------------------------------------------------------------

GPUBROKER_SIM_API cublasStatus_t cublasLtCreate(lt::cublasLtHandle_t* handle) {
  return guarded([&] {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    if (!driver_initialized() || !context_current()) return CUBLAS_STATUS_NOT_INITIALIZED;
    LtHandles& table = lt_handles();
    std::lock_guard lock(table.mutex);
    const std::uint64_t id = table.next_id++;
    table.live.insert(id);
    *handle = reinterpret_cast<lt::cublasLtHandle_t>(static_cast<std::uintptr_t>(id) * 16 + kLtHandleTag);
    return CUBLAS_STATUS_SUCCESS;
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasLtDestroy(lt::cublasLtHandle_t handle) {
  const auto value = reinterpret_cast<std::uintptr_t>(handle);
  LtHandles& table = lt_handles();
  std::lock_guard lock(table.mutex);
  if (value % 16 != kLtHandleTag || table.live.erase(value / 16) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  return CUBLAS_STATUS_SUCCESS;
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatmulDescCreate(lt::cublasLtMatmulDesc_t* desc,
                                                          cublasComputeType_t compute_type,
                                                          cudaDataType_t scale_type) {
  return guarded([&] {
    if (desc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *desc = reinterpret_cast<lt::cublasLtMatmulDesc_t>(new LtDesc{compute_type, scale_type});
    return CUBLAS_STATUS_SUCCESS;
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatmulDescDestroy(lt::cublasLtMatmulDesc_t desc) {
  delete desc_of(desc);
  return CUBLAS_STATUS_SUCCESS;
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatmulDescSetAttribute(lt::cublasLtMatmulDesc_t desc,
                                                                lt::cublasLtMatmulDescAttributes_t attribute,
                                                                const void* buffer, std::size_t bytes) {
  LtDesc* d = desc_of(desc);
  if (d == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  switch (attribute) {
    case lt::CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return set_exact(d->compute_type, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_SCALE_TYPE: return set_exact(d->scale_type, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_POINTER_MODE: return set_exact(d->pointer_mode, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_TRANSA: return set_exact(d->transa, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_TRANSB: return set_exact(d->transb, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_EPILOGUE: return set_exact(d->epilogue, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set_exact(d->bias, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set_exact(d->bias_type, buffer, bytes);
    case lt::CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return set_exact(d->bias_stride, buffer, bytes);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatrixLayoutCreate(lt::cublasLtMatrixLayout_t* layout, cudaDataType type,
                                                            std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
  return guarded([&] {
    if (layout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = reinterpret_cast<lt::cublasLtMatrixLayout_t>(new LtLayout{type, rows, cols, ld});
    return CUBLAS_STATUS_SUCCESS;
  });
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatrixLayoutDestroy(lt::cublasLtMatrixLayout_t layout) {
  delete layout_of(layout);
  return CUBLAS_STATUS_SUCCESS;
}

GPUBROKER_SIM_API cublasStatus_t cublasLtMatrixLayoutSetAttribute(lt::cublasLtMatrixLayout_t layout,
                                                                  lt::cublasLtMatrixLayoutAttribute_t attribute,
                                                                  const void* buffer, std::size_t bytes) {
  LtLayout* l = layout_of(layout);
  if (l == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  switch (attribute) {
    case lt::CUBLASLT_MATRIX_LAYOUT_TYPE: return set_exact(l->type, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_ORDER: return set_exact(l->order, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_ROWS: return set_exact(l->rows, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_COLS: return set_exact(l->cols, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_LD: return set_exact(l->ld, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set_exact(l->batch, buffer, bytes);
    case lt::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return set_exact(l->stride, buffer, bytes);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

// D = epilogue(alpha op(A) op(B) + beta C): the checks cuBLASLt makes, then one GemmOp.
GPUBROKER_SIM_API cublasStatus_t cublasLtMatmul(lt::cublasLtHandle_t handle, lt::cublasLtMatmulDesc_t desc,
                                                const void* alpha, const void* a, lt::cublasLtMatrixLayout_t a_layout,
                                                const void* b, lt::cublasLtMatrixLayout_t b_layout, const void* beta,
                                                const void* c, lt::cublasLtMatrixLayout_t c_layout, void* d,
                                                lt::cublasLtMatrixLayout_t d_layout,
                                                const lt::cublasLtMatmulAlgo_t* /*algo: the sim has one*/,
                                                void* /*workspace*/, std::size_t /*workspace_bytes*/,
                                                cudaStream_t stream) {
  return guarded([&] {
    if (!lt_handle_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const LtDesc* op_desc = desc_of(desc);
    const LtLayout *la = layout_of(a_layout), *lb = layout_of(b_layout), *lc = layout_of(c_layout),
                   *ld = layout_of(d_layout);
    if (op_desc == nullptr || la == nullptr || lb == nullptr || lc == nullptr || ld == nullptr || alpha == nullptr ||
        beta == nullptr)
      return CUBLAS_STATUS_INVALID_VALUE;
    for (const LtLayout* l : {la, lb, lc, ld}) {
      if (l->order != lt::CUBLASLT_ORDER_COL || !layout_fits_int(*l)) return CUBLAS_STATUS_NOT_SUPPORTED;
      if (l->batch != ld->batch || l->batch < 1) return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (op_desc->pointer_mode != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (lc->type != ld->type || lc->rows != ld->rows || lc->cols != ld->cols) return CUBLAS_STATUS_INVALID_VALUE;
    GemmTypes types{};
    if (cublasStatus_t status = gemm_types(la->type, lb->type, ld->type, op_desc->compute_type, &types);
        status != CUBLAS_STATUS_SUCCESS)
      return status;
    bool has_bias = false;
    const std::optional<Activation> activation = activation_of(op_desc->epilogue, &has_bias);
    if (!activation) return CUBLAS_STATUS_NOT_SUPPORTED;
    const auto transa = static_cast<cublasOperation_t>(op_desc->transa);
    const auto transb = static_cast<cublasOperation_t>(op_desc->transb);
    const int m = static_cast<int>(ld->rows), n = static_cast<int>(ld->cols);
    const int k = static_cast<int>(transa == CUBLAS_OP_N ? la->cols : la->rows);
    if (static_cast<int>(transa == CUBLAS_OP_N ? la->rows : la->cols) != m ||
        static_cast<int>(transb == CUBLAS_OP_N ? lb->rows : lb->cols) != k ||
        static_cast<int>(transb == CUBLAS_OP_N ? lb->cols : lb->rows) != n)
      return CUBLAS_STATUS_INVALID_VALUE;
    if (cublasStatus_t status = check_gemm_shape(transa, transb, m, n, k, static_cast<int>(la->ld),
                                                 static_cast<int>(lb->ld), static_cast<int>(ld->ld));
        status != CUBLAS_STATUS_SUCCESS)
      return status;
    if (lc->ld < std::max<std::int64_t>(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const auto bias_type =
        element_type(op_desc->bias_type < 0 ? ld->type : static_cast<cudaDataType>(op_desc->bias_type));
    if (has_bias && (op_desc->bias == 0 || !bias_type)) return CUBLAS_STATUS_INVALID_VALUE;

    GemmOp op;
    op.transpose_a = transa != CUBLAS_OP_N;
    op.transpose_b = transb != CUBLAS_OP_N;
    op.m = m;
    op.n = n;
    op.k = k;
    op.batch = ld->batch;
    op.a = strided(a, types.a, static_cast<int>(la->ld), la->stride);
    op.b = strided(b, types.b, static_cast<int>(lb->ld), lb->stride);
    op.c = strided(c, types.c, static_cast<int>(lc->ld), lc->stride);
    op.d = strided(d, types.c, static_cast<int>(ld->ld), ld->stride);
    op.activation = *activation;
    if (has_bias) {
      op.bias = strided(reinterpret_cast<const void*>(op_desc->bias), *bias_type, m, op_desc->bias_stride);
    }
    op.scalars = scalars(BlasHandle{}, types.scalar, alpha, beta);
    BlasHandle on_stream;
    on_stream.stream = stream;
    return enqueue(on_stream, op, [](const GemmOp& queued) { return gemm_ranges_valid_at_call(queued); });
  });
}

}  // extern "C"

// Every export has exactly the type the broker's table expects.
namespace gpubroker::cuda {
#define GPUBROKER_SIM_CHECK_EXPORT(member, symbol, type) \
  static_assert(std::is_same_v<decltype(::symbol), type>, #symbol " differs from cublas_api.h");
GPUBROKER_CUBLAS_API(GPUBROKER_SIM_CHECK_EXPORT)
#undef GPUBROKER_SIM_CHECK_EXPORT
}  // namespace gpubroker::cuda
namespace gpubroker::cuda::lt {
#define GPUBROKER_SIM_CHECK_LT_EXPORT(member, symbol, type) \
  static_assert(std::is_same_v<decltype(::symbol), type>, #symbol " differs from cublaslt_abi.h");
GPUBROKER_CUBLASLT_API(GPUBROKER_SIM_CHECK_LT_EXPORT)
#undef GPUBROKER_SIM_CHECK_LT_EXPORT
}  // namespace gpubroker::cuda::lt
