// The CUDA half of the wire protocol (module gpubroker/calls, which the transport may not include):
// every remoted CUDA call as one row of GPUBROKER_CUDA_CALLS, and the payload and reply structs the
// rows name. protocol.h turns the rows (after the transport kinds of gpubroker/wire/transport.h)
// into the RequestKind enum, the shape table and the Protocol handed to the transport; the broker's dispatch
// (broker/session.cc) calls each row's handler, so a row without one does not compile; the
// shims' typed calls (shim/client/calls.h) check each payload against its row at compile time.
//
// A new call is a payload struct here (if no existing one fits), a row, the handler in its area
// of the broker, and the shim's entry point. Rows are numbered in order: append, never insert.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpubroker/wire/transport.h"

namespace gpubroker::wire {

// Payloads of the device kinds. Stream and event ids are the session's own (0, 1 and 2 name the
// session's default stream); device pointers are real device addresses.
struct MemAllocRequest {
  std::uint32_t device;
  std::uint32_t reserved;
  std::uint64_t bytes;
};
struct HandleRequest {
  std::uint64_t handle;
};
struct DeviceRequest {
  std::uint32_t device;
  std::uint32_t reserved;
};
struct MemsetRequest {
  std::uint64_t pointer;
  std::uint64_t bytes;
  std::uint64_t stream;
  std::uint32_t value;          // the element's value, in its low element_bytes bytes
  std::uint32_t element_bytes;  // 0 or 1: a byte memset (cuMemsetD8); 2, 4: cuMemsetD16, D32
};
struct CopyRequest {
  std::uint64_t destination;
  std::uint64_t source;
  std::uint64_t bytes;  // equals staged_bytes for the staged kinds
  std::uint64_t stream;
};
struct StreamCreateRequest {
  std::uint64_t stream;
  std::uint32_t flags;
  std::int32_t priority;
};
struct EventCreateRequest {
  std::uint64_t event;
  std::uint32_t flags;
  std::uint32_t reserved;
};
struct EventStreamRequest {
  std::uint64_t event;
  std::uint64_t stream;
};
// A host function (cudaLaunchHostFunc, cudaStreamAddCallback) runs in the client. The broker
// enqueues a notice on the stream; when the stream reaches it, the client's callback thread (in a
// kHostFuncWait) gets the id and runs the function. The client itself holds back later work on
// that stream until the function has returned, so the device never waits for a client.
struct HostFuncRequest {
  std::uint64_t stream;
  std::uint64_t id;  // chosen by the client; the broker only hands it back
};
struct EventPairRequest {
  std::uint64_t start;
  std::uint64_t end;
};
struct CaptureRequest {
  std::uint64_t stream;
  std::uint64_t graph_or_mode;  // the capture mode to begin, the graph id to end into
};
struct GraphRequest {
  std::uint64_t first;   // graph (instantiate, update's graph is `second`) or exec
  std::uint64_t second;  // exec id to create, stream to launch on, or graph to update from
};
struct FunctionRequest {
  std::uint64_t module;
  std::uint64_t function;  // the id the client chooses
};
// A kernel launch; the packed parameter block follows it in the payload (kLaunchKernel) or in
// the staging pipe (kLaunchKernelStaged).
struct LaunchRequest {
  std::uint64_t function;
  std::uint32_t grid[3];
  std::uint32_t block[3];
  std::uint32_t shared_bytes : 24;  // dynamic shared memory (a GPU allows at most a few hundred KiB)
  std::uint32_t flags : 8;          // LaunchFlags
  std::uint32_t param_bytes;
  std::uint64_t stream;
};
// Launch attributes a launch can carry (cudaLaunchKernelExC, cudaLaunchCooperativeKernel).
enum LaunchFlags : std::uint8_t {
  kLaunchCooperative = 1u << 0,
  kLaunchProgrammaticSerialization = 1u << 1,  // may overlap the previous kernel's tail (Hopper PDL)
};
struct FuncAttributeRequest {
  std::uint64_t function;
  std::int32_t attribute;  // CUfunction_attribute
  std::int32_t value;
};
// Every CUfunction_attribute from 0 (MAX_THREADS_PER_BLOCK) to 15 (CLUSTER_SCHEDULING_POLICY_PREFERENCE).
struct FuncAttributesResult {
  std::int32_t values[16];
};
struct OccupancyRequest {
  std::uint64_t function;
  std::int32_t block_size;
  std::uint32_t flags;
  std::uint64_t dynamic_shared_bytes;
};
// cudaDeviceGetLimit/SetLimit. The context is every session's, so a session can raise a limit
// (a larger stack or heap costs the others nothing they rely on) but never lower it.
struct LimitRequest {
  std::int32_t limit;  // cudaLimit = CUlimit
  std::uint32_t raise;  // 0: read it; 1: raise it to at least `value`
  std::uint64_t value;
};
struct GlobalResult {
  std::uint64_t pointer;
  std::uint64_t bytes;
};
static_assert(sizeof(LaunchRequest) == 48);
inline constexpr std::size_t kInlineParamBytes = kInlinePayloadBytes - sizeof(LaunchRequest);
// kLaunchKernel's payload: the launch, then its packed parameter block.
using LaunchPayload = Tail<LaunchRequest, kInlinePayloadBytes>;
struct BlasSettingRequest {
  std::uint64_t handle;
  std::uint64_t value;  // a stream id, or a cublasMath_t
};
struct BlasWorkspaceRequest {
  std::uint64_t handle;
  std::uint64_t pointer;
  std::uint64_t bytes;
};
enum class GemmVariant : std::uint32_t {
  kSingle = 0,         // cublasGemmEx
  kStridedBatched = 1,  // cublasGemmStridedBatchedEx
  kPointerArrays = 2,   // cublasGemmBatchedEx: a, b, c are device arrays of device pointers
};
// One GEMM of the cublasGemmEx family. Scalars travel by value (host pointer mode), in the
// compute type's representation.
struct BlasGemmRequest {
  std::uint64_t handle;
  std::int32_t transa, transb, m, n, k;
  std::int32_t a_type, b_type, c_type, compute_type, algo;
  std::int32_t lda, ldb, ldc, batch_count;
  std::uint32_t variant;  // GemmVariant
  std::uint32_t reserved;
  std::uint64_t a, b, c;
  std::int64_t stride_a, stride_b, stride_c;
  std::uint8_t alpha[8];
  std::uint8_t beta[8];
};
struct PointerResult {
  std::uint64_t pointer;
};
struct BrokerTotals {
  std::uint64_t sessions;
  std::uint64_t device_bytes;
  std::uint64_t allocations;
  std::uint64_t streams;
  std::uint64_t events;
  std::uint64_t arena_registrations;
  std::uint64_t graphs;  // graphs and executable graphs
  std::uint64_t staged_bytes;      // bytes that crossed the staging pipes (a CPU copy each side)
  std::uint64_t zero_copy_bytes;   // bytes moved between the host arena and the device directly
  std::uint64_t modules;
  std::uint64_t blas_handles;
};
struct MemInfoResult {
  std::uint64_t free;
  std::uint64_t total;
};
// One matrix of a cuBLASLt matmul: column-major, `batch` matrices `stride` elements apart.
struct BlasLtLayout {
  std::uint32_t type;  // cudaDataType
  std::int32_t rows, cols, ld, batch;
  std::uint32_t reserved;
  std::int64_t stride;
};
// cublasLtMatmul: D = epilogue(alpha op(A) op(B) + beta C [+ bias]), everything the shim's
// descriptors said, in one slot. Scalars travel by value in the scale type's representation; the
// session's own cuBLASLt handle (made on first use) runs it on `stream`.
struct BlasLtMatmulRequest {
  std::uint64_t stream;
  std::uint64_t a, b, c, d, bias;  // device addresses; bias 0 without a bias epilogue
  std::int32_t compute_type, scale_type;  // cublasComputeType_t, cudaDataType
  std::int32_t transa, transb;            // cublasOperation_t
  std::uint32_t epilogue;                 // cublasLtEpilogue_t
  std::int32_t bias_type;                 // cudaDataType
  std::int64_t bias_stride;               // elements between the bias vectors of batch members
  BlasLtLayout layouts[4];                // A, B, C, D
  std::uint8_t alpha[8];
  std::uint8_t beta[8];
};
static_assert(sizeof(BlasLtMatmulRequest) == 224);

// What made the session's error sticky (kSessionError): a kernel fault or launch failure poisons
// the session as it poisons a CUDA context, and every later device call fails with it. Staged
// back whole: the request's staged_bytes must be sizeof(SessionErrorReport).
struct SessionErrorReport {
  std::int32_t status;  // the sticky CUresult; 0 while the session has none
  std::uint32_t flags;  // SessionErrorFlags
  char kernel[248];     // the failed kernel's mangled name, NUL-terminated; empty where the device
                        // reported the fault at a later synchronization without naming the kernel
};
static_assert(sizeof(SessionErrorReport) == 256);
enum SessionErrorFlags : std::uint32_t {
  kSessionErrorSimDriver = 1u << 0,  // the broker runs the sim driver
};
// cublas?trsmBatched: a and b are device arrays of batch_count device pointers (kPointerArrays), or
// the matrices themselves (kSingle, cublas?trsm_v2: batch_count 1); `type` CUDA_R_32F or
// CUDA_R_64F; alpha by value in its representation.
enum class TrsmVariant : std::uint32_t { kPointerArrays = 0, kSingle = 1 };
struct BlasTrsmRequest {
  std::uint64_t handle;
  std::int32_t side, uplo, trans, diag, m, n, lda, ldb, batch_count;
  std::int32_t type;
  std::uint64_t a, b;
  std::uint8_t alpha[8];
  std::uint32_t variant;  // TrsmVariant
  std::uint32_t reserved;
};
// Payloads of the VMM kinds. Devices are broker ordinals.
struct VmmGranularityRequest {
  std::uint32_t device;
  std::int32_t option;  // CUmemAllocationGranularity_flags
};
struct VmmReserveRequest {
  std::uint64_t size;
  std::uint64_t alignment;
  std::uint64_t hint;
  std::uint64_t flags;
};
struct VmmRangeRequest {
  std::uint64_t pointer;
  std::uint64_t size;
};
struct VmmCreateRequest {
  std::uint64_t size;
  std::uint32_t device;
  std::int32_t handle_types;  // CUmemAllocationProp::requestedHandleTypes
  std::uint64_t flags;
};
struct VmmMapRequest {
  std::uint64_t pointer;
  std::uint64_t size;
  std::uint64_t offset;
  std::uint64_t allocation;  // the id kVmmCreate returned
  std::uint64_t flags;
};
inline constexpr std::size_t kMaxVmmAccessDescriptors = 4;
struct VmmAccessRequest {
  std::uint64_t pointer;
  std::uint64_t size;
  std::uint32_t count;  // descriptors used, 1 to kMaxVmmAccessDescriptors
  std::uint32_t reserved;
  struct {
    std::int32_t location_type;
    std::uint32_t device;  // a broker ordinal
    std::int32_t flags;    // CU_MEM_ACCESS_FLAGS_PROT_*
  } descriptors[kMaxVmmAccessDescriptors];
};
// cudaEventRecordWithFlags: flags are cudaEventRecordFlags (0, or 1: cudaEventRecordExternal).
struct EventRecordRequest {
  std::uint64_t event;
  std::uint64_t stream;
  std::uint32_t flags;
  std::uint32_t reserved;
};
// cublasSetMatrix/GetMatrix (and the Vector forms, one row of `cols` elements): a column-major
// rows x cols matrix of element_bytes-wide elements at `pointer`, leading dimension `ld`
// elements, copied in `stream` order. The staged bytes are the matrix packed (leading dimension
// `rows`), cols * rows * element_bytes of them.
struct BlasMatrixRequest {
  std::uint64_t pointer;
  std::uint64_t stream;
  std::int64_t rows, cols, ld;
  std::int32_t element_bytes;
  std::uint32_t reserved;
};

// The BLAS-1 functions, every typed form (cublasSaxpy_v2, cublasDdot_v2, the legacy cublasSdot,
// ...) as the broker calls them, through cuBLAS's *Ex forms.
enum class BlasVectorFunction : std::uint32_t { kAxpy, kScal, kDot, kNrm2, kAsum, kAmax, kAmin, kCopy, kSwap };
// One BLAS-1 call on vectors of n elements of `type` (a cudaDataType), x and y `incx`/`incy`
// elements apart. alpha (axpy, scal) by value in `type`'s representation. The result (dot, nrm2,
// asum: a `type`; amax, amin: a 1-based int) comes back in the reply's bytes, or, where `result`
// is nonzero (device pointer mode), is written to that device memory in the handle's stream order.
struct BlasVectorRequest {
  std::uint64_t handle;
  std::uint32_t function;  // BlasVectorFunction
  std::int32_t type;
  std::int32_t n, incx, incy;
  std::uint32_t reserved;
  std::uint64_t x, y, result;
  std::uint8_t alpha[8];
};
static_assert(sizeof(BlasVectorRequest) == 64);

// The batched LU functions. `a` is a device array of batch_count device pointers to n x n matrices
// of `type` (CUDA_R_32F or CUDA_R_64F); `pivots` (0: none) a device int array of n * batch_count.
// kGetrf factors the matrices in place, `info` a device int array of batch_count; kGetrs solves
// op(A) X = B (`trans`), `b` the array of the n x nrhs right-hand sides (leading dimension ldb);
// kGetri writes inv(A) to the matrices of the array `b` (ldb), `info` as for kGetrf.
enum class BlasLuFunction : std::uint32_t { kGetrf, kGetrs, kGetri };
struct BlasLuRequest {
  std::uint64_t handle;
  std::uint32_t function;  // BlasLuFunction
  std::int32_t type, trans, n, nrhs, lda, ldb, batch_count;
  std::uint64_t a, b, pivots, info;
};
static_assert(sizeof(BlasLuRequest) == 72);

// X(Name, Payload, Reply, Staging, Posting, area, handler): the request kind k<Name>; its inline
// payload; its reply (in the mailbox); which way staged bytes flow; whether a client may post it
// without waiting; and the broker's handler, area().handler(call, payload). Completion::status
// carries a CUresult, or a cublasStatus_t for the Blas kinds.
#define GPUBROKER_CUDA_CALLS(X)                                                                            \
  X(MemAlloc, MemAllocRequest, PointerResult, kNone, kCall, memory, allocate)                              \
  X(MemFree, HandleRequest, NoReply, kNone, kCall, memory, free)              /* the device pointer */     \
  X(MemGetInfo, DeviceRequest, MemInfoResult, kNone, kCall, memory, info)     /* the session's view */     \
  X(Memset, MemsetRequest, NoReply, kNone, kMayPost, memory, memset)                                       \
  X(CopyHostToDevice, CopyRequest, NoReply, kToBroker, kCall, memory, copy_from_staging)                   \
  X(CopyDeviceToHost, CopyRequest, NoReply, kFromBroker, kCall, memory, copy_to_staging)                   \
  X(CopyDeviceToDevice, CopyRequest, NoReply, kNone, kMayPost, memory, copy_device)                        \
  X(CopyArenaToDevice, CopyRequest, NoReply, kNone, kMayPost, memory, copy_from_arena) /* no CPU copy */   \
  X(CopyDeviceToArena, CopyRequest, NoReply, kNone, kMayPost, memory, copy_to_arena)                       \
  X(ArenaRegister, ArenaRange, NoReply, kNone, kCall, memory, register_arena)                              \
  X(ArenaUnregister, ArenaRange, NoReply, kNone, kCall, memory, unregister_arena)                          \
  X(StreamCreate, StreamCreateRequest, NoReply, kNone, kMayPost, streams, create_stream)                   \
  X(StreamDestroy, HandleRequest, NoReply, kNone, kCall, streams, destroy_stream)                          \
  X(StreamSynchronize, HandleRequest, NoReply, kNone, kCall, streams, synchronize_stream)                  \
  X(StreamQuery, HandleRequest, NoReply, kNone, kCall, streams, query_stream)                              \
  X(StreamWaitEvent, EventStreamRequest, NoReply, kNone, kMayPost, streams, wait_event)                    \
  X(EventCreate, EventCreateRequest, NoReply, kNone, kMayPost, streams, create_event)                      \
  X(EventDestroy, HandleRequest, NoReply, kNone, kCall, streams, destroy_event)                            \
  X(EventRecord, EventStreamRequest, NoReply, kNone, kMayPost, streams, record_event)                      \
  X(EventSynchronize, HandleRequest, NoReply, kNone, kCall, streams, synchronize_event)                    \
  X(EventQuery, HandleRequest, NoReply, kNone, kCall, streams, query_event)                                \
  X(EventElapsedTime, EventPairRequest, float, kNone, kCall, streams, elapsed_time)  /* milliseconds */    \
  X(ContextSynchronize, NoPayload, NoReply, kNone, kCall, streams, synchronize_all)                        \
  X(BrokerTotals, NoPayload, BrokerTotals, kNone, kCall, core, totals)   /* every session together */      \
  X(StreamBeginCapture, CaptureRequest, NoReply, kNone, kCall, graphs, begin_capture)                      \
  X(StreamEndCapture, CaptureRequest, NoReply, kNone, kCall, graphs, end_capture)                          \
  X(StreamIsCapturing, HandleRequest, std::int32_t, kNone, kCall, graphs, is_capturing)                    \
  X(GraphInstantiate, GraphRequest, NoReply, kNone, kCall, graphs, instantiate)                            \
  X(GraphLaunch, GraphRequest, NoReply, kNone, kMayPost, graphs, launch)                                   \
  X(GraphExecUpdate, GraphRequest, std::int32_t, kNone, kCall, graphs, update) /* CUgraphExecUpdateResult */ \
  X(GraphDestroy, HandleRequest, NoReply, kNone, kCall, graphs, destroy_graph)                             \
  X(GraphExecDestroy, HandleRequest, NoReply, kNone, kCall, graphs, destroy_exec)                          \
  X(ModuleLoad, HandleRequest, NoReply, kToBroker, kCall, modules, load)          /* staged: the image */  \
  X(ModuleGetFunction, FunctionRequest, NoReply, kToBroker, kCall, modules, get_function) /* the name */   \
  X(LaunchKernel, LaunchPayload, NoReply, kNone, kMayPost, modules, launch)       /* parameters inline */  \
  X(LaunchKernelStaged, LaunchRequest, NoReply, kToBroker, kCall, modules, launch_staged)                  \
  X(ModuleUnload, HandleRequest, NoReply, kNone, kCall, modules, unload)                                   \
  X(BlasCreate, HandleRequest, NoReply, kNone, kCall, blas, create)        /* the id the client chooses */ \
  X(BlasDestroy, HandleRequest, NoReply, kNone, kCall, blas, destroy)                                      \
  X(BlasSetStream, BlasSettingRequest, NoReply, kNone, kCall, blas, set_stream)                            \
  X(BlasSetMathMode, BlasSettingRequest, NoReply, kNone, kCall, blas, set_math_mode)                       \
  X(BlasSetWorkspace, BlasWorkspaceRequest, NoReply, kNone, kCall, blas, set_workspace)                    \
  X(BlasGemm, BlasGemmRequest, NoReply, kNone, kCall, blas, gemm)                                          \
  X(HostFuncEnqueue, HostFuncRequest, NoReply, kNone, kCall, host_funcs, enqueue)                          \
  X(HostFuncWait, NoPayload, std::uint64_t, kNone, kCall, host_funcs, wait)  /* the next function's id */  \
  X(BlasTrsmBatched, BlasTrsmRequest, NoReply, kNone, kCall, blas, trsm_batched)                           \
  X(VmmGranularity, VmmGranularityRequest, std::uint64_t, kNone, kCall, vmm, granularity)                  \
  X(VmmAddressReserve, VmmReserveRequest, PointerResult, kNone, kCall, vmm, reserve)                       \
  X(VmmAddressFree, VmmRangeRequest, NoReply, kNone, kCall, vmm, free_address)                             \
  X(VmmCreate, VmmCreateRequest, std::uint64_t, kNone, kCall, vmm, create)  /* the allocation's id */      \
  X(VmmRelease, HandleRequest, NoReply, kNone, kCall, vmm, release)                                        \
  X(VmmMap, VmmMapRequest, NoReply, kNone, kCall, vmm, map)                                                \
  X(VmmUnmap, VmmRangeRequest, NoReply, kNone, kCall, vmm, unmap)                                          \
  X(VmmSetAccess, VmmAccessRequest, NoReply, kNone, kCall, vmm, set_access)                                \
  X(FuncGetAttributes, FuncAttributeRequest, FuncAttributesResult, kNone, kCall, modules, get_attributes)  \
  X(FuncSetAttribute, FuncAttributeRequest, NoReply, kNone, kCall, modules, set_attribute)                 \
  X(FuncSetCacheConfig, FuncAttributeRequest, NoReply, kNone, kCall, modules, set_cache_config)            \
  X(Occupancy, OccupancyRequest, std::int32_t, kNone, kCall, modules, occupancy) /* blocks per SM */       \
  X(ModuleGetGlobal, HandleRequest, GlobalResult, kToBroker, kCall, modules, get_global) /* the name */    \
  X(DeviceLimit, LimitRequest, std::uint64_t, kNone, kCall, core, limit)     /* the value afterwards */    \
  X(SessionError, NoPayload, NoReply, kFromBroker, kCall, core, error_report) /* a SessionErrorReport */   \
  X(BlasLtMatmul, BlasLtMatmulRequest, NoReply, kNone, kCall, blas, lt_matmul)                             \
  X(EventRecordWithFlags, EventRecordRequest, NoReply, kNone, kMayPost, streams, record_event_with_flags)  \
  X(StreamGetFlags, HandleRequest, std::uint32_t, kNone, kCall, streams, stream_flags)                     \
  X(StreamGetPriority, HandleRequest, std::int32_t, kNone, kCall, streams, stream_priority)                \
  X(BlasSetMatrix, BlasMatrixRequest, NoReply, kToBroker, kCall, blas, set_matrix)                         \
  X(BlasGetMatrix, BlasMatrixRequest, NoReply, kFromBroker, kCall, blas, get_matrix)                       \
  X(BlasVector, BlasVectorRequest, std::uint64_t, kNone, kCall, blas, vector) /* the result's bytes */  \
  X(BlasLuBatched, BlasLuRequest, NoReply, kNone, kCall, blas, lu_batched)

}  // namespace gpubroker::wire
