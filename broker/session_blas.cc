#include "broker/session_blas.h"

#include <algorithm>
#include <cstring>

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_SUCCESS;

std::uint64_t element_bytes(int type) {
  switch (type) {
    case cuda::CUDA_R_32F: return 4;
    case cuda::CUDA_R_64F: return 8;
    case cuda::CUDA_R_16F:
    case cuda::CUDA_R_16BF: return 2;
    default: return 0;
  }
}

// A cublasOperation_t cuBLAS accepts (anything but N would otherwise read as a transpose).
bool operation_valid(std::int32_t op) {
  return op == cuda::CUBLAS_OP_N || op == cuda::CUBLAS_OP_T || op == cuda::CUBLAS_OP_C;
}

}  // namespace

SessionBlas::SessionBlas(DeviceSession& session) : session_(session), lt_(session.device_count()) {}

// A handle works on the device it was made on, whichever is current.
Lookup<SessionBlas::Handle*> SessionBlas::handle_for(std::uint64_t id) {
  auto it = handles_.find(id);
  if (it == handles_.end()) return CallError{cuda::CUBLAS_STATUS_NOT_INITIALIZED};
  return &it->second;
}

Outcome<wire::NoReply> SessionBlas::create(CallContext&, const wire::HandleRequest& request) {
  const DeviceContext& context = session_.current_context();
  const BlasCalls* blas = context.blas();
  if (blas == nullptr) return CallError{cuda::CUBLAS_STATUS_NOT_INITIALIZED};
  if (handles_.contains(request.handle)) return CallError{cuda::CUBLAS_STATUS_INVALID_VALUE};
  cuda::cublasHandle_t handle = nullptr;
  if (const int status = blas->create(&handle); status != cuda::CUBLAS_STATUS_SUCCESS) return CallError{status};
  handles_.emplace(request.handle, Handle{OwnedBlasHandle(handle, DestroyBlasHandle{blas}, &session_.counters().blas_handles),
                                          &context, blas, ArrayCopy{}, 0, 0, 0, 0, 0});
  // Scalars arrive by value in the request: the handle reads them from host memory.
  blas->set_pointer_mode(handle, cuda::CUBLAS_POINTER_MODE_HOST);
  if (auto stream = session_.streams().stream_for(0)) blas->set_stream(handle, stream.value().handle);
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionBlas::destroy(CallContext&, const wire::HandleRequest& request) {
  auto it = handles_.find(request.handle);
  if (it == handles_.end()) return CallError{cuda::CUBLAS_STATUS_NOT_INITIALIZED};
  const int status = it->second.owner.reset();
  handles_.erase(it);
  return answer(status);
}

Outcome<wire::NoReply> SessionBlas::set_stream(CallContext&, const wire::BlasSettingRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  auto stream = session_.streams().stream_for(request.value);
  // A stream of another device than the handle's is refused.
  Handle& h = *handle.value();
  if (!stream || stream.value().context != h.context) return CallError{cuda::CUBLAS_STATUS_INVALID_VALUE};
  const int status = h.blas->set_stream(h.owner.get(), stream.value().handle);
  if (status == cuda::CUBLAS_STATUS_SUCCESS) h.stream = request.value;
  if (status == cuda::CUBLAS_STATUS_SUCCESS) h.workspace = h.workspace_bytes = h.workspace_serial = 0;  // cuBLAS drops it
  return answer(status);
}

Outcome<wire::NoReply> SessionBlas::set_math_mode(CallContext&, const wire::BlasSettingRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  const Handle& h = *handle.value();
  return answer(h.blas->set_math_mode(h.owner.get(), static_cast<cuda::cublasMath_t>(request.value)));
}

Outcome<wire::NoReply> SessionBlas::set_workspace(CallContext&, const wire::BlasWorkspaceRequest& w) {
  auto handle = handle_for(w.handle);
  if (!handle) return handle.error();
  Handle& h = *handle.value();
  const std::uint64_t serial = w.bytes != 0 ? session_.memory_serial(w.pointer, w.bytes) : 0;
  if (w.bytes != 0 && (serial == 0 || session_.device_of(w.pointer) != h.context->ordinal())) {
    return CallError{cuda::CUBLAS_STATUS_INVALID_VALUE};
  }
  const int status = h.blas->set_workspace(h.owner.get(), reinterpret_cast<void*>(w.pointer), w.bytes);
  if (status == cuda::CUBLAS_STATUS_SUCCESS) {
    h.workspace = w.pointer;
    h.workspace_bytes = w.bytes;
    h.workspace_serial = serial;
    h.workspace_epoch = session_.memory_epoch();
  }
  return answer(status);
}

bool SessionBlas::keep_workspace_current(Handle& h) {
  if (h.workspace_serial == 0 || h.workspace_epoch == session_.memory_epoch()) return true;
  h.workspace_epoch = session_.memory_epoch();
  if (session_.memory_serial(h.workspace, h.workspace_bytes) == h.workspace_serial) return true;
  // As if the client had set no workspace: cuBLAS computes without one.
  h.workspace = h.workspace_bytes = h.workspace_serial = 0;
  return h.blas->set_workspace(h.owner.get(), nullptr, 0) == cuda::CUBLAS_STATUS_SUCCESS;
}

Outcome<wire::NoReply> SessionBlas::gemm(CallContext& call, const wire::BlasGemmRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  Handle& h = *handle.value();
  if (!keep_workspace_current(h)) return CallError{cuda::CUBLAS_STATUS_EXECUTION_FAILED};
  std::optional<SessionTimeline::Work> work;
  if (session_.timeline().on()) {
    if (auto stream = session_.streams().find_stream(h.stream, h.context->ordinal())) {
      work.emplace(session_.timeline().begin(call, *stream, h.stream));
    }
  }
  const int status = run_gemm(request, h);
  if (work) work->finish(status == cuda::CUBLAS_STATUS_SUCCESS ? cuda::CUDA_SUCCESS : cuda::CUDA_ERROR_UNKNOWN, "gemm",
                         static_cast<std::uint64_t>(request.m), static_cast<std::uint64_t>(request.n),
                         static_cast<std::uint64_t>(request.k));
  return answer(status);
}

Outcome<wire::NoReply> SessionBlas::trsm_batched(CallContext&, const wire::BlasTrsmRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  if (!keep_workspace_current(*handle.value())) return CallError{cuda::CUBLAS_STATUS_EXECUTION_FAILED};
  return answer(run_trsm_batched(request, *handle.value()));
}

Outcome<std::uint64_t> SessionBlas::vector(CallContext&, const wire::BlasVectorRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  if (!keep_workspace_current(*handle.value())) return CallError{cuda::CUBLAS_STATUS_EXECUTION_FAILED};
  std::uint64_t result = 0;
  if (const int status = run_vector(request, *handle.value(), result); status != cuda::CUBLAS_STATUS_SUCCESS) {
    return CallError{status};
  }
  return result;
}

Outcome<wire::NoReply> SessionBlas::lu_batched(CallContext&, const wire::BlasLuRequest& request) {
  auto handle = handle_for(request.handle);
  if (!handle) return handle.error();
  if (!keep_workspace_current(*handle.value())) return CallError{cuda::CUBLAS_STATUS_EXECUTION_FAILED};
  return answer(run_lu_batched(request, *handle.value()));
}

Outcome<wire::NoReply> SessionBlas::lt_matmul(CallContext&, const wire::BlasLtMatmulRequest& request) {
  return answer(run_lt_matmul(request));
}

Outcome<wire::NoReply> SessionBlas::set_matrix(CallContext& call, const wire::BlasMatrixRequest& request) {
  return transfer_matrix(call, request, true);
}

Outcome<wire::NoReply> SessionBlas::get_matrix(CallContext& call, const wire::BlasMatrixRequest& request) {
  return transfer_matrix(call, request, false);
}

// cublasSetMatrix/GetMatrix: the matrix crosses the pipe packed, one column after another, and
// each column lands `ld` elements after the one before it. cuBLAS's own checks come first, then
// the whole extent is checked against the session's memory; the staged bytes flow either way.
Outcome<wire::NoReply> SessionBlas::transfer_matrix(CallContext& call, const wire::BlasMatrixRequest& r, bool to_device) {
  std::uint64_t column = 0, packed = 0, pitch = 0;
  int refusal = 0;
  if (r.rows < 0 || r.cols < 0 || r.element_bytes <= 0 || r.ld <= 0 || r.ld < r.rows ||
      __builtin_mul_overflow(static_cast<std::uint64_t>(r.rows), static_cast<std::uint64_t>(r.element_bytes), &column) ||
      __builtin_mul_overflow(column, static_cast<std::uint64_t>(r.cols), &packed) ||
      __builtin_mul_overflow(static_cast<std::uint64_t>(r.ld), static_cast<std::uint64_t>(r.element_bytes), &pitch) ||
      packed != call.header().staged_bytes) {
    refusal = cuda::CUBLAS_STATUS_INVALID_VALUE;
  } else if (packed != 0 &&
             !session_.owns_range(r.pointer, matrix_bytes(r.ld, r.rows, r.cols, static_cast<std::uint64_t>(r.element_bytes)))) {
    refusal = cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  return session_.memory().transfer_staged(
      call, SessionMemory::StagedTransfer{r.pointer, std::max<std::uint64_t>(column, 1), pitch, r.stream, to_device,
                                          cuda::CUBLAS_STATUS_MAPPING_ERROR, refusal});
}

// A matrix of the session's memory on the device whose context runs the call: cuBLAS would read
// another device's memory through a peer mapping the broker never made, and fault the context.
bool SessionBlas::operand(const DeviceContext& on, std::uint64_t pointer, std::uint64_t bytes) const {
  return session_.owns_range(pointer, bytes) && session_.device_of(pointer) == on.ordinal();
}

// Checks every matrix the GEMM touches against this session's allocations before cuBLAS sees
// it: a session never makes cuBLAS read or write memory that is not its own.
int SessionBlas::run_gemm(const wire::BlasGemmRequest& r, Handle& h) {
  const BlasCalls& blas = *h.blas;
  const cuda::cublasHandle_t handle = h.owner.get();
  const std::uint64_t ea = element_bytes(r.a_type), eb = element_bytes(r.b_type), ec = element_bytes(r.c_type);
  if (ea == 0 || eb == 0 || ec == 0 || r.m < 0 || r.n < 0 || r.k < 0 || r.batch_count < 1 || r.lda < 1 || r.ldb < 1 ||
      r.ldc < 1) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!operation_valid(r.transa) || !operation_valid(r.transb)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = r.transa != cuda::CUBLAS_OP_N, tb = r.transb != cuda::CUBLAS_OP_N;
  const std::uint64_t a_bytes = matrix_bytes(r.lda, ta ? r.k : r.m, ta ? r.m : r.k, ea);
  const std::uint64_t b_bytes = matrix_bytes(r.ldb, tb ? r.n : r.k, tb ? r.k : r.n, eb);
  const std::uint64_t c_bytes = matrix_bytes(r.ldc, r.m, r.n, ec);
  auto extent = [&](std::int64_t stride, std::uint64_t one, std::uint64_t element) {
    return batch_bytes(stride, one, element, r.batch_count);
  };
  const auto opa = static_cast<cuda::cublasOperation_t>(r.transa), opb = static_cast<cuda::cublasOperation_t>(r.transb);
  const auto at = static_cast<cuda::cudaDataType_t>(r.a_type), bt = static_cast<cuda::cudaDataType_t>(r.b_type),
             ct = static_cast<cuda::cudaDataType_t>(r.c_type);
  const auto compute = static_cast<cuda::cublasComputeType_t>(r.compute_type);
  const auto algo = static_cast<cuda::cublasGemmAlgo_t>(r.algo);
  switch (static_cast<wire::GemmVariant>(r.variant)) {
    case wire::GemmVariant::kSingle:
      if ((a_bytes && !operand(*h.context, r.a, a_bytes)) || (b_bytes && !operand(*h.context, r.b, b_bytes)) || !operand(*h.context, r.c, c_bytes)) {
        return cuda::CUBLAS_STATUS_INVALID_VALUE;
      }
      return blas.gemm_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha, reinterpret_cast<const void*>(r.a), at, r.lda,
                          reinterpret_cast<const void*>(r.b), bt, r.ldb, r.beta, reinterpret_cast<void*>(r.c), ct,
                          r.ldc, compute, algo);
    case wire::GemmVariant::kStridedBatched:
      if (r.stride_a < 0 || r.stride_b < 0 || r.stride_c < 0 ||
          (a_bytes && !operand(*h.context, r.a, extent(r.stride_a, a_bytes, ea))) ||
          (b_bytes && !operand(*h.context, r.b, extent(r.stride_b, b_bytes, eb))) ||
          !operand(*h.context, r.c, extent(r.stride_c, c_bytes, ec))) {
        return cuda::CUBLAS_STATUS_INVALID_VALUE;
      }
      return blas.gemm_strided_batched_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha, reinterpret_cast<const void*>(r.a),
                                          at, r.lda, r.stride_a, reinterpret_cast<const void*>(r.b), bt, r.ldb,
                                          r.stride_b, r.beta, reinterpret_cast<void*>(r.c), ct, r.ldc, r.stride_c,
                                          r.batch_count, compute, algo);
    case wire::GemmVariant::kPointerArrays: {
      // The arrays live in device memory and may have just been written by the stream's work:
      // wait for it, read them, check every matrix they point to, and give cuBLAS the broker's
      // copy of what was checked.
      cuda::cudaStream_t stream = nullptr;
      blas.get_stream(handle, &stream);
      std::vector<std::uint64_t> pointers;
      const std::uint64_t sources[3] = {r.a, r.b, r.c};
      if (int s = read_pointer_arrays(*h.context, sources, r.batch_count, stream, pointers); s != cuda::CUBLAS_STATUS_SUCCESS) {
        return s;
      }
      const std::size_t n = static_cast<std::size_t>(r.batch_count);
      for (std::size_t i = 0; i < n; ++i) {
        if ((a_bytes && !operand(*h.context, pointers[i], a_bytes)) || (b_bytes && !operand(*h.context, pointers[n + i], b_bytes)) ||
            !operand(*h.context, pointers[2 * n + i], c_bytes)) {
          return cuda::CUBLAS_STATUS_INVALID_VALUE;
        }
      }
      const cuda::CUdeviceptr copy = upload_arrays(h, std::move(pointers), stream);
      if (copy == 0) return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
      const auto* arrays = reinterpret_cast<const std::uint64_t*>(copy);
      const int status = blas.gemm_batched_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha,
                                              reinterpret_cast<const void* const*>(arrays), at, r.lda,
                                              reinterpret_cast<const void* const*>(arrays + n), bt, r.ldb, r.beta,
                                              reinterpret_cast<void* const*>(arrays + 2 * n), ct, r.ldc, r.batch_count,
                                              compute, algo);
      release_arrays(h, stream);
      return status;
    }
  }
  return cuda::CUBLAS_STATUS_INVALID_VALUE;
}

// cublasLtMatmul from the shim's one-slot description: every matrix (and the bias) checked against
// the session's memory, then the broker's own descriptors and the session's cuBLASLt handle (made
// on first use) on the request's stream. The descriptors are host objects, made and destroyed per
// call.
int SessionBlas::run_lt_matmul(const wire::BlasLtMatmulRequest& r) {
  namespace lt_abi = cuda::lt;
  switch (r.epilogue) {
    case lt_abi::CUBLASLT_EPILOGUE_DEFAULT:
    case lt_abi::CUBLASLT_EPILOGUE_RELU:
    case lt_abi::CUBLASLT_EPILOGUE_BIAS:
    case lt_abi::CUBLASLT_EPILOGUE_RELU_BIAS:
    case lt_abi::CUBLASLT_EPILOGUE_GELU:
    case lt_abi::CUBLASLT_EPILOGUE_GELU_BIAS:
      break;
    default:
      return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  }
  const wire::BlasLtLayout& a = r.layouts[0];
  const wire::BlasLtLayout& b = r.layouts[1];
  const wire::BlasLtLayout& c = r.layouts[2];
  const wire::BlasLtLayout& d = r.layouts[3];
  // The layouts must describe one product, as cuBLASLt requires: op(A) m x k, op(B) k x n, C and D
  // m x n. The extents below are each layout's own, so they cover what cuBLASLt reads only then.
  if (!operation_valid(r.transa) || !operation_valid(r.transb)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = r.transa != cuda::CUBLAS_OP_N, tb = r.transb != cuda::CUBLAS_OP_N;
  const std::int32_t m = d.rows, n = d.cols, k = ta ? a.rows : a.cols;
  if ((ta ? a.cols : a.rows) != m || (tb ? b.cols : b.rows) != k || (tb ? b.rows : b.cols) != n || c.rows != m ||
      c.cols != n) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  // alpha and beta are read in the scale type's representation from 8 bytes each.
  if (r.scale_type != cuda::CUDA_R_32F && r.scale_type != cuda::CUDA_R_16F) return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  std::uint64_t extents[4] = {};
  for (int i = 0; i < 4; ++i) {
    const wire::BlasLtLayout& l = r.layouts[i];
    const std::uint64_t element = element_bytes(static_cast<int>(l.type));
    if (element == 0 || element == 8) return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
    if (l.rows < 0 || l.cols < 0 || l.ld < std::max(1, l.rows) || l.batch != d.batch) return cuda::CUBLAS_STATUS_INVALID_VALUE;
    extents[i] = batch_bytes(l.stride, matrix_bytes(l.ld, l.rows, l.cols, element), element, l.batch);
  }
  auto found = session_.streams().stream_for(r.stream);
  if (!found) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  const auto [stream, context] = found.value();
  const BlasLtCalls* lt = context->blas_lt();  // the stream's device's
  if (lt == nullptr) return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  // C may be null only where beta (any nonzero byte) cannot make cuBLASLt read it.
  const bool beta_zero = std::ranges::all_of(r.beta, [](std::uint8_t byte) { return byte == 0; });
  if (!operand(*context, r.a, extents[0]) || !operand(*context, r.b, extents[1]) || !operand(*context, r.d, extents[3]) ||
      (r.c != 0 ? !operand(*context, r.c, extents[2]) : !beta_zero)) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool bias = (r.epilogue & lt_abi::CUBLASLT_EPILOGUE_BIAS) != 0;
  const std::int32_t bias_type = r.bias_type < 0 ? static_cast<std::int32_t>(d.type) : r.bias_type;
  if (bias) {
    const std::uint64_t element = element_bytes(bias_type);
    if (element == 0 || !operand(*context, r.bias, batch_bytes(r.bias_stride, d.rows * element, element, d.batch))) {
      return cuda::CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  const std::uint32_t device = context->ordinal();
  if (!lt_[device]) {
    lt_abi::cublasLtHandle_t handle = nullptr;
    if (const int s = lt->create(&handle); s != cuda::CUBLAS_STATUS_SUCCESS) return s;
    lt_[device].emplace(handle, DestroyLtHandle{lt}, nullptr);
  }

  // The broker's descriptors, released whatever happens.
  struct Descriptors {
    const BlasLtCalls& lt;
    lt_abi::cublasLtMatmulDesc_t op = nullptr;
    lt_abi::cublasLtMatrixLayout_t layouts[4] = {};
    ~Descriptors() {
      for (auto* l : layouts) {
        if (l != nullptr) lt.matrix_layout_destroy(l);
      }
      if (op != nullptr) lt.matmul_desc_destroy(op);
    }
  } own{*lt};
  int s = lt->matmul_desc_create(&own.op, static_cast<cuda::cublasComputeType_t>(r.compute_type),
                                 static_cast<cuda::cudaDataType_t>(r.scale_type));
  auto set = [&](lt_abi::cublasLtMatmulDescAttributes_t attribute, const auto& value) {
    if (s == cuda::CUBLAS_STATUS_SUCCESS) s = lt->matmul_desc_set_attribute(own.op, attribute, &value, sizeof value);
  };
  set(lt_abi::CUBLASLT_MATMUL_DESC_TRANSA, r.transa);
  set(lt_abi::CUBLASLT_MATMUL_DESC_TRANSB, r.transb);
  set(lt_abi::CUBLASLT_MATMUL_DESC_EPILOGUE, r.epilogue);
  if (bias) {
    set(lt_abi::CUBLASLT_MATMUL_DESC_BIAS_POINTER, r.bias);
    set(lt_abi::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type);
    if (r.bias_stride != 0) set(lt_abi::CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, r.bias_stride);
  }
  for (int i = 0; i < 4 && s == cuda::CUBLAS_STATUS_SUCCESS; ++i) {
    const wire::BlasLtLayout& l = r.layouts[i];
    s = lt->matrix_layout_create(&own.layouts[i], static_cast<cuda::cudaDataType>(l.type), static_cast<std::uint64_t>(l.rows),
                                 static_cast<std::uint64_t>(l.cols), l.ld);
    if (s == cuda::CUBLAS_STATUS_SUCCESS && l.batch != 1) {
      s = lt->matrix_layout_set_attribute(own.layouts[i], lt_abi::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &l.batch, sizeof l.batch);
      if (s == cuda::CUBLAS_STATUS_SUCCESS) {
        s = lt->matrix_layout_set_attribute(own.layouts[i], lt_abi::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &l.stride,
                                            sizeof l.stride);
      }
    }
  }
  if (s != cuda::CUBLAS_STATUS_SUCCESS) return s;
  // No algorithm and no workspace: cuBLASLt picks with its own heuristic, as for a null algo.
  return lt->matmul(lt_[device]->get(), own.op, r.alpha, reinterpret_cast<const void*>(r.a), own.layouts[0],
                    reinterpret_cast<const void*>(r.b), own.layouts[1], r.beta, reinterpret_cast<const void*>(r.c),
                    own.layouts[2], reinterpret_cast<void*>(r.d), own.layouts[3], nullptr, nullptr, 0, stream);
}

int SessionBlas::read_pointer_arrays(const DeviceContext& context, std::span<const std::uint64_t> arrays, int count,
                                     cuda::CUstream stream, std::vector<std::uint64_t>& out) {
  if (count < 1 || count > kMaxPointerArrayBatch) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  const auto n = static_cast<std::size_t>(count);
  const std::uint64_t bytes = n * sizeof(std::uint64_t);
  for (std::uint64_t array : arrays) {
    if (!session_.owns_range(array, bytes)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  out.resize(arrays.size() * n);
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    if (context.memcpy_dtoh_async(out.data() + i * n, arrays[i], bytes, stream) != CUDA_SUCCESS) {
      return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
    }
  }
  return context.stream_synchronize(stream) == CUDA_SUCCESS ? cuda::CUBLAS_STATUS_SUCCESS
                                                           : cuda::CUBLAS_STATUS_EXECUTION_FAILED;
}

// The copy is the broker's device memory: no request names it, so nothing the client does can
// change it between the check and cuBLAS's read. One per handle, reused once the call that read
// it last has passed (usually long since: reading the next call's arrays synchronized the stream).
cuda::CUdeviceptr SessionBlas::upload_arrays(Handle& h, std::vector<std::uint64_t> pointers, cuda::CUstream stream) {
  ArrayCopy& copy = h.arrays;
  const DeviceContext& context = *h.context;
  if (copy.in_use && context.event_synchronize(copy.done->get()) != CUDA_SUCCESS) return 0;
  copy.in_use = false;
  const std::uint64_t bytes = pointers.size() * sizeof(std::uint64_t);
  if (bytes > copy.capacity) {
    copy.device.reset();
    copy.capacity = 0;
    cuda::CUdeviceptr device = 0;
    if (context.mem_alloc(&device, bytes) != CUDA_SUCCESS) return 0;
    copy.device.emplace(device, FreeBrokerMemory{&context, bytes}, nullptr);
    copy.capacity = bytes;
  }
  if (!copy.done) {
    cuda::CUevent event = nullptr;
    if (context.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) return 0;
    copy.done.emplace(event, DestroyEvent{&context}, nullptr);
  }
  // The host side stays in the handle until the upload has run (release_arrays records it).
  copy.host = std::move(pointers);
  if (context.memcpy_htod_async(copy.device->get(), copy.host.data(), bytes, stream) != CUDA_SUCCESS) return 0;
  return copy.device->get();
}

void SessionBlas::release_arrays(Handle& h, cuda::CUstream stream) {
  ArrayCopy& copy = h.arrays;
  // A record that fails leaves nothing to wait for: then wait for the whole stream instead.
  copy.in_use = h.context->event_record(copy.done->get(), stream) == CUDA_SUCCESS ||
                h.context->stream_synchronize(stream) != CUDA_SUCCESS;
}

// Like the pointer-array GEMM: the arrays live in device memory, are read in the handle's stream
// order, and every triangular matrix and right-hand side they name is checked against the
// session's memory before cuBLAS sees it. A single TRSM (cublas?trsm_v2) names its two matrices
// directly: the broker makes the arrays of one, so that cuBLAS's batched form computes it.
int SessionBlas::run_trsm_batched(const wire::BlasTrsmRequest& r, Handle& h) {
  static_assert(sizeof(wire::BlasTrsmRequest) == 80);
  const BlasCalls& blas = *h.blas;
  const cuda::cublasHandle_t handle = h.owner.get();
  const bool left = r.side == cuda::CUBLAS_SIDE_LEFT;
  const bool single = r.variant == static_cast<std::uint32_t>(wire::TrsmVariant::kSingle);
  const std::int64_t k = left ? r.m : r.n;
  if ((r.side != cuda::CUBLAS_SIDE_LEFT && r.side != cuda::CUBLAS_SIDE_RIGHT) ||
      (r.uplo != cuda::CUBLAS_FILL_MODE_LOWER && r.uplo != cuda::CUBLAS_FILL_MODE_UPPER) ||
      (r.trans != cuda::CUBLAS_OP_N && r.trans != cuda::CUBLAS_OP_T && r.trans != cuda::CUBLAS_OP_C) ||
      (r.diag != cuda::CUBLAS_DIAG_NON_UNIT && r.diag != cuda::CUBLAS_DIAG_UNIT) || r.m < 0 || r.n < 0 ||
      r.batch_count < 0 || r.lda < std::max<std::int64_t>(1, k) || r.ldb < std::max(1, r.m) ||
      (r.type != cuda::CUDA_R_32F && r.type != cuda::CUDA_R_64F) ||
      r.variant > static_cast<std::uint32_t>(wire::TrsmVariant::kSingle) || (single && r.batch_count != 1)) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  if (r.m == 0 || r.n == 0 || r.batch_count == 0) return cuda::CUBLAS_STATUS_SUCCESS;
  const std::uint64_t element = element_bytes(r.type);
  const std::uint64_t a_bytes = matrix_bytes(r.lda, k, k, element);
  const std::uint64_t b_bytes = matrix_bytes(r.ldb, r.m, r.n, element);
  cuda::cudaStream_t stream = nullptr;
  blas.get_stream(handle, &stream);
  std::vector<std::uint64_t> pointers;
  const std::uint64_t sources[2] = {r.a, r.b};
  if (single) {
    pointers.assign(sources, sources + 2);
  } else if (int s = read_pointer_arrays(*h.context, sources, r.batch_count, stream, pointers);
             s != cuda::CUBLAS_STATUS_SUCCESS) {
    return s;
  }
  const std::size_t n = static_cast<std::size_t>(r.batch_count);
  for (std::size_t i = 0; i < n; ++i) {
    if (!operand(*h.context, pointers[i], a_bytes) || !operand(*h.context, pointers[n + i], b_bytes)) {
      return cuda::CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  const cuda::CUdeviceptr copy = upload_arrays(h, std::move(pointers), stream);
  if (copy == 0) return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
  const auto* arrays = reinterpret_cast<const std::uint64_t*>(copy);
  const auto side = static_cast<cuda::cublasSideMode_t>(r.side);
  const auto uplo = static_cast<cuda::cublasFillMode_t>(r.uplo);
  const auto trans = static_cast<cuda::cublasOperation_t>(r.trans);
  const auto diag = static_cast<cuda::cublasDiagType_t>(r.diag);
  int status = cuda::CUBLAS_STATUS_SUCCESS;
  if (r.type == cuda::CUDA_R_64F) {
    double alpha = 0;
    std::memcpy(&alpha, r.alpha, sizeof alpha);
    status = blas.dtrsm_batched(handle, side, uplo, trans, diag, r.m, r.n, &alpha,
                                reinterpret_cast<const double* const*>(arrays), r.lda,
                                reinterpret_cast<double* const*>(arrays + n), r.ldb, r.batch_count);
  } else {
    float alpha = 0;
    std::memcpy(&alpha, r.alpha, sizeof alpha);
    status = blas.strsm_batched(handle, side, uplo, trans, diag, r.m, r.n, &alpha,
                                reinterpret_cast<const float* const*>(arrays), r.lda,
                                reinterpret_cast<float* const*>(arrays + n), r.ldb, r.batch_count);
  }
  release_arrays(h, stream);
  return status;
}

// A BLAS-1 call through cuBLAS's *Ex form of its function. Every vector it reads or writes, and a
// device-mode result, is checked against the session's memory on the handle's device first, with
// the span of a strided vector computed overflow-checked (a negative increment walks the same span
// from its far end). A host-mode result is the broker's own variable, which cuBLAS fills before it
// returns (it waits for the handle's stream, as it does for any program in host pointer mode); a
// device-mode one is written in stream order, with the handle switched to device pointer mode for
// this call only: every other call hands cuBLAS its scalars by value.
int SessionBlas::run_vector(const wire::BlasVectorRequest& r, Handle& h, std::uint64_t& result) {
  using F = wire::BlasVectorFunction;
  const auto function = static_cast<F>(r.function);
  if (r.function > static_cast<std::uint32_t>(F::kSwap)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  if (r.type != cuda::CUDA_R_32F && r.type != cuda::CUDA_R_64F) return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
  const std::uint64_t element = element_bytes(r.type);
  auto span = [&](std::int32_t increment) -> std::uint64_t {
    if (r.n <= 0) return 0;
    const std::uint64_t stride = increment < 0 ? std::uint64_t(-std::int64_t(increment)) : std::uint64_t(increment);
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(std::uint64_t(r.n - 1), stride, &bytes) || __builtin_add_overflow(bytes, 1, &bytes) ||
        __builtin_mul_overflow(bytes, element, &bytes)) {
      return UINT64_MAX;  // owns no range
    }
    return bytes;
  };
  const bool x_only = function == F::kScal || function == F::kNrm2 || function == F::kAsum || function == F::kAmax ||
                      function == F::kAmin;
  const bool answers = function == F::kDot || (x_only && function != F::kScal);
  const std::uint64_t x_bytes = x_only && r.incx <= 0 ? 0 : span(r.incx);  // x alone: not read then
  const std::uint64_t y_bytes = x_only ? 0 : span(r.incy);
  const std::uint64_t result_bytes = function == F::kAmax || function == F::kAmin ? sizeof(int) : element;
  if ((x_bytes != 0 && !operand(*h.context, r.x, x_bytes)) || (y_bytes != 0 && !operand(*h.context, r.y, y_bytes)) ||
      (answers && r.result != 0 && !operand(*h.context, r.result, result_bytes))) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const BlasCalls& blas = *h.blas;
  const cuda::cublasHandle_t handle = h.owner.get();
  const auto type = static_cast<cuda::cudaDataType>(r.type);
  const auto* x = reinterpret_cast<const void*>(r.x);
  auto* y = reinterpret_cast<void*>(r.y);
  const bool on_device = answers && r.result != 0;
  void* out = on_device ? reinterpret_cast<void*>(r.result) : static_cast<void*>(&result);
  if (on_device) blas.set_pointer_mode(handle, cuda::CUBLAS_POINTER_MODE_DEVICE);
  int status = cuda::CUBLAS_STATUS_INVALID_VALUE;
  switch (function) {
    case F::kAxpy: status = blas.axpy_ex(handle, r.n, r.alpha, type, x, type, r.incx, y, type, r.incy, type); break;
    case F::kScal: status = blas.scal_ex(handle, r.n, r.alpha, type, reinterpret_cast<void*>(r.x), type, r.incx, type); break;
    case F::kDot: status = blas.dot_ex(handle, r.n, x, type, r.incx, y, type, r.incy, out, type, type); break;
    case F::kNrm2: status = blas.nrm2_ex(handle, r.n, x, type, r.incx, out, type, type); break;
    case F::kAsum: status = blas.asum_ex(handle, r.n, x, type, r.incx, out, type, type); break;
    case F::kAmax: status = blas.iamax_ex(handle, r.n, x, type, r.incx, static_cast<int*>(out)); break;
    case F::kAmin: status = blas.iamin_ex(handle, r.n, x, type, r.incx, static_cast<int*>(out)); break;
    case F::kCopy: status = blas.copy_ex(handle, r.n, x, type, r.incx, y, type, r.incy); break;
    case F::kSwap: status = blas.swap_ex(handle, r.n, reinterpret_cast<void*>(r.x), type, r.incx, y, type, r.incy); break;
  }
  if (on_device) blas.set_pointer_mode(handle, cuda::CUBLAS_POINTER_MODE_HOST);
  return status;
}

// Like the pointer-array GEMM: the arrays of matrices are read in the handle's stream order, every
// matrix they name is checked against the session's memory on the handle's device, and cuBLAS is
// handed the broker's copy of what was checked. The pivot and info arrays are checked whole.
// getrs's info is a host int in cuBLAS (argument errors only): the broker's own, here.
int SessionBlas::run_lu_batched(const wire::BlasLuRequest& r, Handle& h) {
  using F = wire::BlasLuFunction;
  const auto function = static_cast<F>(r.function);
  if (r.function > static_cast<std::uint32_t>(F::kGetri) || (r.type != cuda::CUDA_R_32F && r.type != cuda::CUDA_R_64F) ||
      r.n < 0 || r.nrhs < 0 || r.lda < std::max(1, r.n) || r.batch_count < 0 ||
      (function != F::kGetrf && r.ldb < std::max(1, r.n)) || (function == F::kGetrs && !operation_valid(r.trans))) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  if (r.n == 0 || r.batch_count == 0 || (function == F::kGetrs && r.nrhs == 0)) return cuda::CUBLAS_STATUS_SUCCESS;
  const std::uint64_t element = element_bytes(r.type);
  const auto count = static_cast<std::uint64_t>(r.batch_count), n = static_cast<std::uint64_t>(r.n);
  std::uint64_t pivot_bytes = 0;
  if (__builtin_mul_overflow(count * n, sizeof(int), &pivot_bytes) ||
      (function != F::kGetrs && !operand(*h.context, r.info, count * sizeof(int))) ||
      (r.pivots != 0 && !operand(*h.context, r.pivots, pivot_bytes))) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const BlasCalls& blas = *h.blas;
  const cuda::cublasHandle_t handle = h.owner.get();
  cuda::cudaStream_t stream = nullptr;
  blas.get_stream(handle, &stream);
  std::vector<std::uint64_t> pointers;
  const std::uint64_t sources[2] = {r.a, r.b};
  const std::size_t arrays = function == F::kGetrf ? 1 : 2;
  if (int s = read_pointer_arrays(*h.context, std::span(sources, arrays), r.batch_count, stream, pointers);
      s != cuda::CUBLAS_STATUS_SUCCESS) {
    return s;
  }
  const std::uint64_t a_bytes = matrix_bytes(r.lda, r.n, r.n, element);
  const std::uint64_t b_bytes = matrix_bytes(r.ldb, r.n, function == F::kGetrs ? r.nrhs : r.n, element);
  for (std::size_t i = 0; i < pointers.size(); ++i) {
    if (!operand(*h.context, pointers[i], i < count ? a_bytes : b_bytes)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const cuda::CUdeviceptr copy = upload_arrays(h, std::move(pointers), stream);
  if (copy == 0) return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
  const auto* a = reinterpret_cast<const std::uint64_t*>(copy);
  const std::uint64_t* b = a + count;
  auto* pivots = reinterpret_cast<int*>(r.pivots);
  auto* info = reinterpret_cast<int*>(r.info);
  int solve_info = 0;
  const auto trans = static_cast<cuda::cublasOperation_t>(r.trans);
  const bool fp64 = r.type == cuda::CUDA_R_64F;
  int status = cuda::CUBLAS_STATUS_INVALID_VALUE;
  switch (function) {
    case F::kGetrf:
      status = fp64 ? blas.dgetrf_batched(handle, r.n, reinterpret_cast<double* const*>(a), r.lda, pivots, info, r.batch_count)
                    : blas.sgetrf_batched(handle, r.n, reinterpret_cast<float* const*>(a), r.lda, pivots, info, r.batch_count);
      break;
    case F::kGetrs:
      status = fp64 ? blas.dgetrs_batched(handle, trans, r.n, r.nrhs, reinterpret_cast<const double* const*>(a), r.lda,
                                          pivots, reinterpret_cast<double* const*>(b), r.ldb, &solve_info, r.batch_count)
                    : blas.sgetrs_batched(handle, trans, r.n, r.nrhs, reinterpret_cast<const float* const*>(a), r.lda,
                                          pivots, reinterpret_cast<float* const*>(b), r.ldb, &solve_info, r.batch_count);
      break;
    case F::kGetri:
      status = fp64 ? blas.dgetri_batched(handle, r.n, reinterpret_cast<const double* const*>(a), r.lda, pivots,
                                          reinterpret_cast<double* const*>(b), r.ldb, info, r.batch_count)
                    : blas.sgetri_batched(handle, r.n, reinterpret_cast<const float* const*>(a), r.lda, pivots,
                                          reinterpret_cast<float* const*>(b), r.ldb, info, r.batch_count);
      break;
  }
  release_arrays(h, stream);
  return status;
}

}  // namespace gpubroker::broker
