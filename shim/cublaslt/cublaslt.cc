// The cuBLASLt entry points the shim serves (libcublasLt.so.12 and .13, GPUBROKER_CUBLAS_ABI).
//
// A runner host has no CUDA libraries of its own, and ggml's CUDA backend lists libcublasLt as
// NEEDED whether or not it calls it, so the library must exist; programs built on PyTorch-style
// stacks also call its core. That core is served here:
//
// - Descriptors (matmul, matrix layout, preference) are host objects in cuBLASLt and stay in the
//   process: plain structs that fit NVIDIA's opaque storage, so the same code serves
//   cublasLt*Create and the *_Init_internal entry points behind NVIDIA's inline cublasLt*Init
//   helpers. Attributes are read and written through one table per descriptor kind.
// - A cublasLtHandle_t is the process's own; cublasLtMatmul sends the whole product in one
//   wire::BlasLtMatmulRequest, which the broker runs with NVIDIA's cuBLASLt (the sim's on the
//   CPU): column-major layouts, FP32, FP16 and BF16 inputs, transposes, strided batches, C apart
//   from D, the bias, ReLU and GELU epilogues, scalars from host or device memory.
//   cublasLtMatmulAlgoGetHeuristic answers with one algorithm exactly when cublasLtMatmul would
//   send the problem, so a caller learns "not supported" before it runs.
// - What is not served answers CUBLAS_STATUS_NOT_SUPPORTED and logs once, naming what: the
//   auxiliary-output and gradient epilogues, scale and amax pointers, orders other than
//   column-major. The exports this file does not define are generated stubs that do the same
//   (../abi).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/cublaslt_abi.h"
#include "shim/abi/unsupported.h"
#include "shim/client/calls.h"
#include "shim/client/connection.h"
#include "shim/cublas/version.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
namespace lt = gpubroker::cuda::lt;

namespace {

constexpr int kSuccess = cuda::CUBLAS_STATUS_SUCCESS;
constexpr int kNotInitialized = cuda::CUBLAS_STATUS_NOT_INITIALIZED;
constexpr int kAllocFailed = cuda::CUBLAS_STATUS_ALLOC_FAILED;
constexpr int kInvalidValue = cuda::CUBLAS_STATUS_INVALID_VALUE;
constexpr int kExecutionFailed = cuda::CUBLAS_STATUS_EXECUTION_FAILED;
constexpr int kNotSupported = cuda::CUBLAS_STATUS_NOT_SUPPORTED;

// Descriptors start with a word that says which kind they are, so that a pointer to something
// else (or to storage never initialized) is refused instead of read as a descriptor.
constexpr std::uint32_t kLayoutMagic = 0x4c544c59;      // "LTLY"
constexpr std::uint32_t kMatmulDescMagic = 0x4c544d44;  // "LTMD"
constexpr std::uint32_t kPreferenceMagic = 0x4c545052;  // "LTPR"
constexpr std::uint64_t kAlgoMagic = 0x6770756272616c67;  // the one algorithm the heuristic returns

struct Layout {
  std::uint32_t magic;
  std::uint32_t type;  // cudaDataType
  std::int32_t order;
  std::int32_t batch_count;
  std::uint64_t rows, cols;
  std::int64_t ld;
  std::int64_t batch_stride;  // elements
  std::int64_t plane_offset;
};
static_assert(sizeof(Layout) <= lt::kMatrixLayoutBytes);

struct MatmulDesc {
  std::uint32_t magic;
  std::int32_t compute_type, scale_type, pointer_mode;
  std::int32_t transa, transb, transc, fill_mode;
  std::uint32_t epilogue;
  std::int32_t bias_type;
  std::int32_t sm_count_target;
  std::int8_t fast_accum;
  std::int64_t bias_batch_stride;
  std::uint64_t bias, aux, a_scale, b_scale, c_scale, d_scale, amax_d;
};
static_assert(sizeof(MatmulDesc) <= lt::kMatmulDescBytes);

struct Preference {
  std::uint32_t magic;
  std::uint32_t search_mode;
  std::uint64_t max_workspace_bytes;
  std::uint32_t reduction_scheme_mask;
  std::uint32_t min_alignment[4];  // A, B, C, D
  float max_waves_count;
  std::uint64_t impl_mask;
};
static_assert(sizeof(Preference) <= lt::kPreferenceBytes);

// One settable attribute: where it lives in the descriptor and its exact size (cuBLASLt refuses
// a buffer of any other size).
struct Attribute {
  int id;
  std::size_t offset, bytes;
};
#define GPUBROKER_LT_ATTRIBUTE(id, type, field) \
  Attribute { lt::id, offsetof(type, field), sizeof(type::field) }

constexpr Attribute kLayoutAttributes[] = {
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_TYPE, Layout, type),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_ORDER, Layout, order),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_ROWS, Layout, rows),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_COLS, Layout, cols),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_LD, Layout, ld),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, Layout, batch_count),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, Layout, batch_stride),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET, Layout, plane_offset),
};
constexpr Attribute kMatmulDescAttributes[] = {
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, MatmulDesc, compute_type),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_SCALE_TYPE, MatmulDesc, scale_type),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_POINTER_MODE, MatmulDesc, pointer_mode),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_TRANSA, MatmulDesc, transa),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_TRANSB, MatmulDesc, transb),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_TRANSC, MatmulDesc, transc),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_FILL_MODE, MatmulDesc, fill_mode),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_EPILOGUE, MatmulDesc, epilogue),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_BIAS_POINTER, MatmulDesc, bias),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, MatmulDesc, bias_batch_stride),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, MatmulDesc, aux),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, MatmulDesc, sm_count_target),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, MatmulDesc, a_scale),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, MatmulDesc, b_scale),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_C_SCALE_POINTER, MatmulDesc, c_scale),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_D_SCALE_POINTER, MatmulDesc, d_scale),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, MatmulDesc, amax_d),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_FAST_ACCUM, MatmulDesc, fast_accum),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, MatmulDesc, bias_type),
};
constexpr Attribute kPreferenceAttributes[] = {
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_PREF_SEARCH_MODE, Preference, search_mode),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, Preference, max_workspace_bytes),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, Preference, reduction_scheme_mask),
    Attribute{lt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, offsetof(Preference, min_alignment) + 0, 4},
    Attribute{lt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, offsetof(Preference, min_alignment) + 4, 4},
    Attribute{lt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, offsetof(Preference, min_alignment) + 8, 4},
    Attribute{lt::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, offsetof(Preference, min_alignment) + 12, 4},
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT, Preference, max_waves_count),
    GPUBROKER_LT_ATTRIBUTE(CUBLASLT_MATMUL_PREF_IMPL_MASK, Preference, impl_mask),
};
#undef GPUBROKER_LT_ATTRIBUTE

template <std::size_t N>
const Attribute* find_attribute(const Attribute (&table)[N], int id) {
  for (const Attribute& a : table) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

template <class Descriptor, std::size_t N>
int set_attribute(Descriptor* d, std::uint32_t magic, const Attribute (&table)[N], int id, const void* buffer,
                  std::size_t bytes) {
  if (d == nullptr || d->magic != magic) return kNotInitialized;
  const Attribute* a = find_attribute(table, id);
  if (a == nullptr) {
    gpubroker_log_unsupported_in("cublasLt*SetAttribute with an attribute this shim does not know", "cuBLASLt",
                                 "CUBLAS_STATUS_NOT_SUPPORTED");
    return kNotSupported;
  }
  if (buffer == nullptr || bytes != a->bytes) return kInvalidValue;
  std::memcpy(reinterpret_cast<std::byte*>(d) + a->offset, buffer, bytes);
  return kSuccess;
}

// cuBLASLt's contract: with bytes == 0 and written != nullptr, only the size is reported.
template <class Descriptor, std::size_t N>
int get_attribute(const Descriptor* d, std::uint32_t magic, const Attribute (&table)[N], int id, void* buffer,
                  std::size_t bytes, std::size_t* written) {
  if (d == nullptr || d->magic != magic) return kNotInitialized;
  const Attribute* a = find_attribute(table, id);
  if (a == nullptr) return kNotSupported;
  if (bytes == 0 && written != nullptr) {
    *written = a->bytes;
    return kSuccess;
  }
  if (buffer == nullptr || bytes < a->bytes) return kInvalidValue;
  std::memcpy(buffer, reinterpret_cast<const std::byte*>(d) + a->offset, a->bytes);
  if (written != nullptr) *written = a->bytes;
  return kSuccess;
}

// A cublasLtHandle_t. The broker runs every matmul of the session with its one cuBLASLt handle,
// so the process's handles carry nothing; the magic word refuses a pointer to anything else.
constexpr std::uint32_t kHandleMagic = 0x4c54484e;  // "LTHN"
struct LtHandle {
  std::uint32_t magic = kHandleMagic;
};
bool valid_handle(const LtHandle* h) { return h != nullptr && h->magic == kHandleMagic; }

template <wire::RequestKind Kind>
int request(const shim::PayloadOf<Kind>& payload) {
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  auto answer = shim::call<Kind>(c->session(), payload);
  if (!answer) return kExecutionFailed;  // the broker is gone
  return answer.value().status;
}

// Bytes of an element of the types the broker serves matrices in; 0 for any other.
std::size_t element_bytes(std::uint32_t type) {
  switch (type) {
    case cuda::CUDA_R_16F:
    case cuda::CUDA_R_16BF:
      return 2;
    case cuda::CUDA_R_32F:
      return 4;
    default:
      return 0;
  }
}

// The scale type (alpha's and beta's) that cuBLASLt pairs with a compute type the broker serves:
// CUDA_R_16F for the FP16 compute types, CUDA_R_32F for the FP32 ones; -1 for the others (FP64,
// integer).
int scale_type_for(int compute_type) {
  switch (compute_type) {
    case cuda::CUBLAS_COMPUTE_16F:
    case cuda::CUBLAS_COMPUTE_16F_PEDANTIC:
      return cuda::CUDA_R_16F;
    case cuda::CUBLAS_COMPUTE_32F:
    case cuda::CUBLAS_COMPUTE_32F_PEDANTIC:
    case cuda::CUBLAS_COMPUTE_32F_FAST_16F:
    case cuda::CUBLAS_COMPUTE_32F_FAST_16BF:
    case cuda::CUBLAS_COMPUTE_32F_FAST_TF32:
      return cuda::CUDA_R_32F;
    default:
      return -1;
  }
}

bool fits_int(std::uint64_t v) { return v <= 0x7fffffffu; }

// The wire request a matmul description asks for, or why it cannot be served.
struct Plan {
  int status = kSuccess;
  const char* unsupported = nullptr;  // what, for the log, when status is kNotSupported
  wire::BlasLtMatmulRequest request{};
  std::size_t scalar_bytes = 0;
};

Plan refuse(const char* what) {
  Plan p;
  p.status = kNotSupported;
  p.unsupported = what;
  return p;
}
Plan invalid() {
  Plan p;
  p.status = kInvalidValue;
  return p;
}

bool valid_layout(const Layout* l) { return l != nullptr && l->magic == kLayoutMagic; }

bool served_epilogue(std::uint32_t epilogue) {
  switch (epilogue) {
    case lt::CUBLASLT_EPILOGUE_DEFAULT:
    case lt::CUBLASLT_EPILOGUE_RELU:
    case lt::CUBLASLT_EPILOGUE_BIAS:
    case lt::CUBLASLT_EPILOGUE_RELU_BIAS:
    case lt::CUBLASLT_EPILOGUE_GELU:
    case lt::CUBLASLT_EPILOGUE_GELU_BIAS:
      return true;
    default:
      return false;
  }
}

Plan plan_matmul(const MatmulDesc* d, const Layout* a, const Layout* b, const Layout* c, const Layout* out) {
  if (d == nullptr || d->magic != kMatmulDescMagic || !valid_layout(a) || !valid_layout(b) || !valid_layout(c) ||
      !valid_layout(out)) {
    return invalid();
  }
  if (!served_epilogue(d->epilogue)) {
    return refuse("cublasLtMatmul with an auxiliary-output or gradient epilogue (*_AUX, DRELU, DGELU, BGRAD)");
  }
  const bool bias = (d->epilogue & lt::CUBLASLT_EPILOGUE_BIAS) != 0;
  if (bias && d->bias == 0) return invalid();
  if (d->a_scale || d->b_scale || d->c_scale || d->d_scale || d->amax_d) {
    return refuse("cublasLtMatmul with scale or amax pointers");
  }
  if (d->transc != cuda::CUBLAS_OP_N) return refuse("cublasLtMatmul with a transposed C");
  if (d->pointer_mode != lt::CUBLASLT_POINTER_MODE_HOST && d->pointer_mode != lt::CUBLASLT_POINTER_MODE_DEVICE) {
    return refuse("cublasLtMatmul with vector alpha (CUBLASLT_POINTER_MODE_*VECTOR*)");
  }
  for (const Layout* l : {a, b, c, out}) {
    if (l->order != lt::CUBLASLT_ORDER_COL) return refuse("cublasLtMatmul with a layout other than CUBLASLT_ORDER_COL");
    if (l->plane_offset != 0) return refuse("cublasLtMatmul with a planar complex layout");
    if (element_bytes(l->type) == 0) return refuse("cublasLtMatmul with a type other than FP32, FP16 and BF16");
    if (!fits_int(l->rows) || !fits_int(l->cols) || l->ld < 0 || !fits_int(static_cast<std::uint64_t>(l->ld))) {
      return refuse("cublasLtMatmul with a dimension past 2^31");
    }
    if (l->ld < std::max<std::int64_t>(1, static_cast<std::int64_t>(l->rows))) return invalid();
    if (l->batch_count != out->batch_count || l->batch_count < 1 || l->batch_stride < 0) return invalid();
  }
  if (c->type != out->type) return refuse("cublasLtMatmul with C and D of different types");
  if (c->rows != out->rows || c->cols != out->cols) return invalid();
  const bool ta = d->transa != cuda::CUBLAS_OP_N, tb = d->transb != cuda::CUBLAS_OP_N;
  const std::uint64_t m = out->rows, n = out->cols, k = ta ? a->rows : a->cols;
  if ((ta ? a->cols : a->rows) != m || (tb ? b->cols : b->rows) != k || (tb ? b->rows : b->cols) != n) {
    return invalid();
  }
  if (scale_type_for(d->compute_type) < 0) return refuse("cublasLtMatmul with an FP64 or integer compute type");
  if (d->scale_type != scale_type_for(d->compute_type)) return refuse("cublasLtMatmul with this scale type");
  const std::size_t bytes = element_bytes(static_cast<std::uint32_t>(d->scale_type));

  Plan p;
  p.scalar_bytes = bytes;
  wire::BlasLtMatmulRequest& r = p.request;
  r.compute_type = d->compute_type;
  r.scale_type = d->scale_type;
  r.transa = d->transa;
  r.transb = d->transb;
  r.epilogue = d->epilogue;
  r.bias = bias ? d->bias : 0;
  r.bias_type = d->bias_type;
  r.bias_stride = d->bias_batch_stride;
  const Layout* layouts[4] = {a, b, c, out};
  for (int i = 0; i < 4; ++i) {
    r.layouts[i] = wire::BlasLtLayout{layouts[i]->type,
                                      static_cast<std::int32_t>(layouts[i]->rows),
                                      static_cast<std::int32_t>(layouts[i]->cols),
                                      static_cast<std::int32_t>(layouts[i]->ld),
                                      layouts[i]->batch_count,
                                      0,
                                      layouts[i]->batch_stride};
  }
  return p;
}

// Reads alpha or beta: from host memory, or from device memory in the matmul's stream order.
int read_scalar(const void* scalar, std::size_t bytes, bool device, std::uint64_t stream, std::uint8_t (&out)[8]) {
  std::memset(out, 0, sizeof out);
  if (scalar == nullptr) return kInvalidValue;
  if (!device) {
    std::memcpy(out, scalar, bytes);
    return kSuccess;
  }
  shim::Connection* c = shim::Connection::get();
  if (c == nullptr) return kNotInitialized;
  const wire::CopyRequest copy{0, reinterpret_cast<std::uint64_t>(scalar), bytes, stream};
  auto reply = shim::call<wire::RequestKind::kCopyDeviceToHost>(c->session(), copy,
                                                                std::span(reinterpret_cast<std::byte*>(out), bytes));
  if (!reply) return kExecutionFailed;
  return reply.value().status == 0 ? kSuccess : kInvalidValue;
}

template <class T, std::uint32_t Magic>
int create(T** out) {
  if (out == nullptr) return kInvalidValue;
  auto* d = new (std::nothrow) T{};
  if (d == nullptr) return kAllocFailed;
  d->magic = Magic;
  *out = d;
  return kSuccess;
}

template <class T, std::uint32_t Magic>
int destroy(T* d) {
  if (d == nullptr) return kSuccess;
  if (d->magic != Magic) return kInvalidValue;
  d->magic = 0;
  delete d;
  return kSuccess;
}

void init_layout(Layout* l, std::uint32_t type, std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
  *l = Layout{};
  l->magic = kLayoutMagic;
  l->type = type;
  l->order = lt::CUBLASLT_ORDER_COL;
  l->batch_count = 1;
  l->rows = rows;
  l->cols = cols;
  l->ld = ld;
}

void init_matmul_desc(MatmulDesc* d, int compute_type, int scale_type) {
  *d = MatmulDesc{};
  d->magic = kMatmulDescMagic;
  d->compute_type = compute_type;
  d->scale_type = scale_type;
  d->pointer_mode = lt::CUBLASLT_POINTER_MODE_HOST;
  d->transa = d->transb = d->transc = cuda::CUBLAS_OP_N;
  d->fill_mode = cuda::CUBLAS_FILL_MODE_FULL;
  d->epilogue = lt::CUBLASLT_EPILOGUE_DEFAULT;
  d->bias_type = -1;  // "the same as D", as cuBLASLt says
}

void init_preference(Preference* p) {
  *p = Preference{};
  p->magic = kPreferenceMagic;
  p->reduction_scheme_mask = 0xff;
  p->impl_mask = ~0ull;
}

}  // namespace

extern "C" {

// ---- the library -------------------------------------------------------------------------------

std::size_t cublasLtGetVersion() {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(shim::kCublasVersion);
}
std::size_t cublasLtGetCudartVersion() {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(shim::kCublasCudartVersion);
}

int cublasLtGetProperty(int type, int* value) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(shim::cublas_property(type, value));
}

const char* cublasLtGetStatusName(int status) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(shim::cublas_status_name(status));
}
const char* cublasLtGetStatusString(int status) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(shim::cublas_status_string(status));
}

// As cuBLASLt's, it needs a device: without a broker, CUBLAS_STATUS_NOT_INITIALIZED.
int cublasLtCreate(LtHandle** handle) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (handle == nullptr) GPUBROKER_TRACE_RETURN(kInvalidValue);
  if (shim::Connection::get() == nullptr) GPUBROKER_TRACE_RETURN(kNotInitialized);
  auto* h = new (std::nothrow) LtHandle{};
  if (h == nullptr) GPUBROKER_TRACE_RETURN(kAllocFailed);
  *handle = h;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

int cublasLtDestroy(LtHandle* handle) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (!valid_handle(handle)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  handle->magic = 0;
  delete handle;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

// ---- descriptors -------------------------------------------------------------------------------

int cublasLtMatrixLayoutInit_internal(Layout* layout, std::size_t size, std::uint32_t type, std::uint64_t rows,
                                      std::uint64_t cols, std::int64_t ld) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (layout == nullptr || size < sizeof(Layout)) GPUBROKER_TRACE_RETURN(kInvalidValue);
  init_layout(layout, type, rows, cols, ld);
  GPUBROKER_TRACE_RETURN(kSuccess);
}
int cublasLtMatrixLayoutCreate(Layout** layout, std::uint32_t type, std::uint64_t rows, std::uint64_t cols,
                               std::int64_t ld) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  const int s = create<Layout, kLayoutMagic>(layout);
  if (s == kSuccess) init_layout(*layout, type, rows, cols, ld);
  GPUBROKER_TRACE_RETURN(s);
}
int cublasLtMatrixLayoutDestroy(Layout* layout) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(destroy<Layout, kLayoutMagic>(layout));
}
int cublasLtMatrixLayoutSetAttribute(Layout* layout, int attribute, const void* buffer, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(set_attribute(layout, kLayoutMagic, kLayoutAttributes, attribute, buffer, bytes));
}
int cublasLtMatrixLayoutGetAttribute(const Layout* layout, int attribute, void* buffer, std::size_t bytes,
                                     std::size_t* written) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(get_attribute(layout, kLayoutMagic, kLayoutAttributes, attribute, buffer, bytes, written));
}

int cublasLtMatmulDescInit_internal(MatmulDesc* desc, std::size_t size, int compute_type, int scale_type) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (desc == nullptr || size < sizeof(MatmulDesc)) GPUBROKER_TRACE_RETURN(kInvalidValue);
  init_matmul_desc(desc, compute_type, scale_type);
  GPUBROKER_TRACE_RETURN(kSuccess);
}
int cublasLtMatmulDescCreate(MatmulDesc** desc, int compute_type, int scale_type) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  const int s = create<MatmulDesc, kMatmulDescMagic>(desc);
  if (s == kSuccess) init_matmul_desc(*desc, compute_type, scale_type);
  GPUBROKER_TRACE_RETURN(s);
}
int cublasLtMatmulDescDestroy(MatmulDesc* desc) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(destroy<MatmulDesc, kMatmulDescMagic>(desc));
}
int cublasLtMatmulDescSetAttribute(MatmulDesc* desc, int attribute, const void* buffer, std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(set_attribute(desc, kMatmulDescMagic, kMatmulDescAttributes, attribute, buffer, bytes));
}
int cublasLtMatmulDescGetAttribute(const MatmulDesc* desc, int attribute, void* buffer, std::size_t bytes,
                                   std::size_t* written) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(
      get_attribute(desc, kMatmulDescMagic, kMatmulDescAttributes, attribute, buffer, bytes, written));
}

int cublasLtMatmulPreferenceInit_internal(Preference* preference, std::size_t size) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (preference == nullptr || size < sizeof(Preference)) GPUBROKER_TRACE_RETURN(kInvalidValue);
  init_preference(preference);
  GPUBROKER_TRACE_RETURN(kSuccess);
}
int cublasLtMatmulPreferenceCreate(Preference** preference) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  const int s = create<Preference, kPreferenceMagic>(preference);
  if (s == kSuccess) init_preference(*preference);
  GPUBROKER_TRACE_RETURN(s);
}
int cublasLtMatmulPreferenceDestroy(Preference* preference) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(destroy<Preference, kPreferenceMagic>(preference));
}
int cublasLtMatmulPreferenceSetAttribute(Preference* preference, int attribute, const void* buffer,
                                         std::size_t bytes) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(set_attribute(preference, kPreferenceMagic, kPreferenceAttributes, attribute, buffer, bytes));
}
int cublasLtMatmulPreferenceGetAttribute(const Preference* preference, int attribute, void* buffer,
                                         std::size_t bytes, std::size_t* written) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  GPUBROKER_TRACE_RETURN(
      get_attribute(preference, kPreferenceMagic, kPreferenceAttributes, attribute, buffer, bytes, written));
}

// ---- matmul ------------------------------------------------------------------------------------

int cublasLtMatmulAlgoGetHeuristic(LtHandle* handle, const MatmulDesc* desc, const Layout* a, const Layout* b,
                                   const Layout* c, const Layout* d, const Preference* preference, int requested,
                                   lt::cublasLtMatmulHeuristicResult_t* results, int* returned) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (!valid_handle(handle)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  if (preference == nullptr || preference->magic != kPreferenceMagic || requested <= 0 || results == nullptr ||
      returned == nullptr) {
    GPUBROKER_TRACE_RETURN(kInvalidValue);
  }
  *returned = 0;
  const Plan plan = plan_matmul(desc, a, b, c, d);
  if (plan.status != kSuccess) {
    if (plan.unsupported != nullptr) gpubroker_log_unsupported_in(plan.unsupported, "cuBLASLt", "CUBLAS_STATUS_NOT_SUPPORTED");
    GPUBROKER_TRACE_RETURN(plan.status);
  }
  results[0] = lt::cublasLtMatmulHeuristicResult_t{};
  results[0].algo.data[0] = kAlgoMagic;
  results[0].workspaceSize = 0;
  results[0].state = kSuccess;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

int cublasLtMatmul(LtHandle* handle, const MatmulDesc* desc, const void* alpha, const void* a_data,
                   const Layout* a, const void* b_data, const Layout* b, const void* beta, const void* c_data,
                   const Layout* c, void* d_data, const Layout* d, const lt::cublasLtMatmulAlgo_t* /*algo*/,
                   void* /*workspace*/, std::size_t /*workspace_bytes*/, void* stream) {
  GPUBROKER_TRACE_ENTRY(kCublasLt);
  if (!valid_handle(handle)) GPUBROKER_TRACE_RETURN(kNotInitialized);
  Plan plan = plan_matmul(desc, a, b, c, d);
  if (plan.status != kSuccess) {
    if (plan.unsupported != nullptr) gpubroker_log_unsupported_in(plan.unsupported, "cuBLASLt", "CUBLAS_STATUS_NOT_SUPPORTED");
    GPUBROKER_TRACE_RETURN(plan.status);
  }
  if (d->rows == 0 || d->cols == 0) GPUBROKER_TRACE_RETURN(kSuccess);  // nothing to compute
  wire::BlasLtMatmulRequest& r = plan.request;
  r.stream = reinterpret_cast<std::uint64_t>(stream);
  const bool device_scalars = desc->pointer_mode == lt::CUBLASLT_POINTER_MODE_DEVICE;
  if (int s = read_scalar(alpha, plan.scalar_bytes, device_scalars, r.stream, r.alpha); s != kSuccess)
    GPUBROKER_TRACE_RETURN(s);
  if (int s = read_scalar(beta, plan.scalar_bytes, device_scalars, r.stream, r.beta); s != kSuccess)
    GPUBROKER_TRACE_RETURN(s);
  r.a = reinterpret_cast<std::uint64_t>(a_data);
  r.b = reinterpret_cast<std::uint64_t>(b_data);
  r.c = reinterpret_cast<std::uint64_t>(c_data);
  r.d = reinterpret_cast<std::uint64_t>(d_data);
  GPUBROKER_TRACE_RETURN(request<wire::RequestKind::kBlasLtMatmul>(r));
}

}  // extern "C"
