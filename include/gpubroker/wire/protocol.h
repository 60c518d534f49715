// The wire protocol between a client (the shims) and the broker: request kinds, the table of
// their payload shapes, the request slot and the completion mailbox.
//
// Everything here is plain data that lives in shared memory or crosses the handshake socket:
// trivially copyable, standard layout, no pointers. Fields that two processes write sit on
// different 128-byte lines. Atomic access goes through std::atomic_ref at the point of use, and
// each such use names the operation it pairs with.
//
// Later issues extend RequestKind and kRequestShapes; the layout fingerprint (segments.h) changes
// with every edit of a shape, so a client and a broker built from different tables refuse each
// other at the handshake instead of misreading requests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace gpubroker::wire {

inline constexpr std::uint32_t kProtocolVersion = 1;

// Bytes each side writes together: one line is 64 bytes, but the adjacent-line prefetcher moves
// pairs, so fields written by different processes are kept 128 bytes apart.
inline constexpr std::size_t kLineBytes = 128;

enum class RequestKind : std::uint16_t {
  kNull = 0,           // does nothing; measures the transport
  kEcho = 1,           // the inline payload comes back in the completion
  kStageChecksum = 2,  // staged bytes flow to the broker; the result is their count and checksum
  kStagePattern = 3,   // the broker stages `staged_bytes` of a seeded pattern back to the client
  kArenaChecksum = 4,  // checksum of a host-arena range, read in place by the broker
  kStageToScratch = 5,    // staged bytes are copied into a broker-side buffer (a copy's model)
  kStageFromScratch = 6,  // staged bytes are copied out of that buffer back to the client

  // Device work (broker/session.cc). Completions carry a CUresult in Completion::status.
  kMemAlloc = 7,          // MemAllocRequest -> PointerResult
  kMemFree = 8,           // HandleRequest (the device pointer)
  kMemGetInfo = 9,        // DeviceRequest -> MemInfoResult (the session's view)
  kMemset = 10,           // MemsetRequest
  kCopyHostToDevice = 11,    // CopyRequest{destination: device pointer}; staged bytes are the source
  kCopyDeviceToHost = 12,    // CopyRequest{source: device pointer}; staged bytes come back
  kCopyDeviceToDevice = 13,  // CopyRequest
  kCopyArenaToDevice = 14,   // CopyRequest{source: host-arena offset}: no CPU copy
  kCopyDeviceToArena = 15,   // CopyRequest{destination: host-arena offset}: no CPU copy
  kArenaRegister = 16,    // ArenaRange: pin a host-arena range for direct transfers
  kArenaUnregister = 17,  // ArenaRange{offset, 0}
  kStreamCreate = 18,     // StreamCreateRequest (the client chooses the id)
  kStreamDestroy = 19,    // HandleRequest
  kStreamSynchronize = 20,  // HandleRequest; completes when the stream's work is done
  kStreamQuery = 21,        // HandleRequest
  kStreamWaitEvent = 22,    // EventStreamRequest
  kEventCreate = 23,        // EventCreateRequest (the client chooses the id)
  kEventDestroy = 24,       // HandleRequest
  kEventRecord = 25,        // EventStreamRequest
  kEventSynchronize = 26,   // HandleRequest
  kEventQuery = 27,         // HandleRequest
  kEventElapsedTime = 28,   // EventPairRequest -> float milliseconds
  kContextSynchronize = 29,  // no payload; completes when all of the session's streams are done
  kBrokerTotals = 30,        // no payload -> BrokerTotals: what every session together holds
  kStreamBeginCapture = 31,  // CaptureRequest{stream, mode}
  kStreamEndCapture = 32,    // CaptureRequest{stream, graph: the id the client chooses}
  kStreamIsCapturing = 33,   // HandleRequest -> std::int32_t CUstreamCaptureStatus
  kGraphInstantiate = 34,    // GraphRequest{graph, exec: the id the client chooses}
  kGraphLaunch = 35,         // GraphRequest{exec, stream}
  kGraphExecUpdate = 36,     // GraphRequest{exec, graph} -> std::int32_t CUgraphExecUpdateResult
  kGraphDestroy = 37,        // HandleRequest
  kGraphExecDestroy = 38,    // HandleRequest
  kModuleLoad = 39,          // HandleRequest{module id the client chooses}; staged: the image
  kModuleGetFunction = 40,   // FunctionRequest; staged: the kernel's mangled name
  kLaunchKernel = 41,        // LaunchRequest, then the packed parameter block, inline
  kLaunchKernelStaged = 42,  // LaunchRequest; staged: a parameter block too large to go inline
  kModuleUnload = 43,        // HandleRequest
  kBlasCreate = 44,          // HandleRequest{the cuBLAS handle id the client chooses}
  kBlasDestroy = 45,         // HandleRequest
  kBlasSetStream = 46,       // BlasSettingRequest{handle, stream}
  kBlasSetMathMode = 47,     // BlasSettingRequest{handle, mode}
  kBlasSetWorkspace = 48,    // BlasWorkspaceRequest
  kBlasGemm = 49,            // BlasGemmRequest -> the cublasStatus_t in Completion::status
  kHostFuncEnqueue = 50,     // HostFuncRequest: the client's host function `id` runs in stream order
  kHostFuncWait = 51,        // no payload -> std::uint64_t: the id of the next host function to run
  kBlasTrsmBatched = 52,     // BlasTrsmRequest -> the cublasStatus_t in Completion::status
  // The driver API's virtual memory management (libcuda.so.1 shim). Physical allocations are
  // session-local ids chosen by the broker; addresses are real device addresses.
  kVmmGranularity = 53,      // VmmGranularityRequest -> std::uint64_t bytes
  kVmmAddressReserve = 54,   // VmmReserveRequest -> PointerResult
  kVmmAddressFree = 55,      // VmmRangeRequest
  kVmmCreate = 56,           // VmmCreateRequest -> std::uint64_t: the allocation's session id
  kVmmRelease = 57,          // HandleRequest{the allocation's id}
  kVmmMap = 58,              // VmmMapRequest
  kVmmUnmap = 59,            // VmmRangeRequest
  kVmmSetAccess = 60,        // VmmAccessRequest
  kFuncGetAttributes = 61,   // FuncAttributeRequest{function} -> FuncAttributesResult
  kFuncSetAttribute = 62,    // FuncAttributeRequest{function, attribute, value}
  kFuncSetCacheConfig = 63,  // FuncAttributeRequest{function, value: the CUfunc_cache}
  kOccupancy = 64,           // OccupancyRequest -> std::int32_t blocks per multiprocessor
  kModuleGetGlobal = 65,     // HandleRequest{module}; staged: the variable's name -> GlobalResult
  kDeviceLimit = 66,         // LimitRequest -> std::uint64_t: the limit's value afterwards
  kSessionError = 67,        // no payload; staged back: a SessionErrorReport -> the sticky CUresult
  kBlasLtMatmul = 68,        // BlasLtMatmulRequest -> the cublasStatus_t in Completion::status
  kCount,
};

// Which way a request's staged bytes flow (RequestHeader::staged_bytes).
enum class Staging : std::uint8_t { kNone, kToBroker, kFromBroker };

struct RequestShape {
  RequestKind kind;
  std::string_view name;
  std::uint16_t min_payload;  // inline payload bytes, inclusive bounds
  std::uint16_t max_payload;
  Staging staging;
};

// Transport-level result of a request. Later request kinds carry their API's own error codes in
// Completion::status; these values are the ones the transport itself produces.
enum class Status : std::int32_t {
  kOk = 0,
  kInvalidRequest = 1,  // a shape or range check failed; the session is also closed
  kTooLarge = 2,        // the result does not fit the mailbox
};

inline constexpr std::size_t kSlotBytes = 256;

struct RequestHeader {
  // Ring protocol word (submission_ring.h): ticket + 1 once the slot is filled, ticket +
  // capacity once the broker has consumed it.
  std::uint64_t sequence;
  std::uint16_t kind;  // RequestKind
  std::uint16_t flags;  // RequestFlags
  std::uint16_t mailbox;  // where a synchronous request's completion goes
  std::uint16_t payload_bytes;
  std::uint32_t mailbox_sequence;  // the value Mailbox::sequence takes when it completes
  // The broker ordinal of the calling thread's current device (the runtime's cudaSetDevice, the
  // context of the driver API): device work the request does not place by a device of its own
  // payload runs there. The transport kinds ignore it.
  std::uint32_t device;
  std::uint64_t staged_bytes;  // bytes moved through the staging pipe of the kind's direction
};

enum RequestFlags : std::uint16_t {
  kSynchronous = 1u << 0,  // the client waits in a mailbox for the completion
};

inline constexpr std::size_t kInlinePayloadBytes = kSlotBytes - sizeof(RequestHeader);

struct RequestSlot {
  RequestHeader header;
  std::byte payload[kInlinePayloadBytes];
};

inline constexpr std::size_t kMailboxResultBytes = 112;

// One per client thread that makes synchronous calls. The broker writes the first line and then
// `sequence`; the client writes `sleepers` on the second line before it sleeps on `sequence`.
struct Mailbox {
  alignas(kLineBytes) std::uint32_t sequence;  // futex word; release-stored after the result
  std::int32_t status;
  std::uint32_t result_bytes;
  std::uint32_t reserved;
  std::byte result[kMailboxResultBytes];
  alignas(kLineBytes) std::uint32_t sleepers;  // count of client threads asleep on `sequence`
};

inline constexpr std::array<RequestShape, static_cast<std::size_t>(RequestKind::kCount)>
    kRequestShapes{{
        {RequestKind::kNull, "Null", 0, 0, Staging::kNone},
        {RequestKind::kEcho, "Echo", 0, kMailboxResultBytes, Staging::kNone},
        {RequestKind::kStageChecksum, "StageChecksum", 0, 0, Staging::kToBroker},
        {RequestKind::kStagePattern, "StagePattern", 8, 8, Staging::kFromBroker},
        {RequestKind::kArenaChecksum, "ArenaChecksum", 16, 16, Staging::kNone},
        {RequestKind::kStageToScratch, "StageToScratch", 0, 0, Staging::kToBroker},
        {RequestKind::kStageFromScratch, "StageFromScratch", 0, 0, Staging::kFromBroker},
        {RequestKind::kMemAlloc, "MemAlloc", 16, 16, Staging::kNone},
        {RequestKind::kMemFree, "MemFree", 8, 8, Staging::kNone},
        {RequestKind::kMemGetInfo, "MemGetInfo", 8, 8, Staging::kNone},
        {RequestKind::kMemset, "Memset", 32, 32, Staging::kNone},
        {RequestKind::kCopyHostToDevice, "CopyHostToDevice", 32, 32, Staging::kToBroker},
        {RequestKind::kCopyDeviceToHost, "CopyDeviceToHost", 32, 32, Staging::kFromBroker},
        {RequestKind::kCopyDeviceToDevice, "CopyDeviceToDevice", 32, 32, Staging::kNone},
        {RequestKind::kCopyArenaToDevice, "CopyArenaToDevice", 32, 32, Staging::kNone},
        {RequestKind::kCopyDeviceToArena, "CopyDeviceToArena", 32, 32, Staging::kNone},
        {RequestKind::kArenaRegister, "ArenaRegister", 16, 16, Staging::kNone},
        {RequestKind::kArenaUnregister, "ArenaUnregister", 16, 16, Staging::kNone},
        {RequestKind::kStreamCreate, "StreamCreate", 16, 16, Staging::kNone},
        {RequestKind::kStreamDestroy, "StreamDestroy", 8, 8, Staging::kNone},
        {RequestKind::kStreamSynchronize, "StreamSynchronize", 8, 8, Staging::kNone},
        {RequestKind::kStreamQuery, "StreamQuery", 8, 8, Staging::kNone},
        {RequestKind::kStreamWaitEvent, "StreamWaitEvent", 16, 16, Staging::kNone},
        {RequestKind::kEventCreate, "EventCreate", 16, 16, Staging::kNone},
        {RequestKind::kEventDestroy, "EventDestroy", 8, 8, Staging::kNone},
        {RequestKind::kEventRecord, "EventRecord", 16, 16, Staging::kNone},
        {RequestKind::kEventSynchronize, "EventSynchronize", 8, 8, Staging::kNone},
        {RequestKind::kEventQuery, "EventQuery", 8, 8, Staging::kNone},
        {RequestKind::kEventElapsedTime, "EventElapsedTime", 16, 16, Staging::kNone},
        {RequestKind::kContextSynchronize, "ContextSynchronize", 0, 0, Staging::kNone},
        {RequestKind::kBrokerTotals, "BrokerTotals", 0, 0, Staging::kNone},
        {RequestKind::kStreamBeginCapture, "StreamBeginCapture", 16, 16, Staging::kNone},
        {RequestKind::kStreamEndCapture, "StreamEndCapture", 16, 16, Staging::kNone},
        {RequestKind::kStreamIsCapturing, "StreamIsCapturing", 8, 8, Staging::kNone},
        {RequestKind::kGraphInstantiate, "GraphInstantiate", 16, 16, Staging::kNone},
        {RequestKind::kGraphLaunch, "GraphLaunch", 16, 16, Staging::kNone},
        {RequestKind::kGraphExecUpdate, "GraphExecUpdate", 16, 16, Staging::kNone},
        {RequestKind::kGraphDestroy, "GraphDestroy", 8, 8, Staging::kNone},
        {RequestKind::kGraphExecDestroy, "GraphExecDestroy", 8, 8, Staging::kNone},
        {RequestKind::kModuleLoad, "ModuleLoad", 8, 8, Staging::kToBroker},
        {RequestKind::kModuleGetFunction, "ModuleGetFunction", 16, 16, Staging::kToBroker},
        {RequestKind::kLaunchKernel, "LaunchKernel", 48, kInlinePayloadBytes, Staging::kNone},
        {RequestKind::kLaunchKernelStaged, "LaunchKernelStaged", 48, 48, Staging::kToBroker},
        {RequestKind::kModuleUnload, "ModuleUnload", 8, 8, Staging::kNone},
        {RequestKind::kBlasCreate, "BlasCreate", 8, 8, Staging::kNone},
        {RequestKind::kBlasDestroy, "BlasDestroy", 8, 8, Staging::kNone},
        {RequestKind::kBlasSetStream, "BlasSetStream", 16, 16, Staging::kNone},
        {RequestKind::kBlasSetMathMode, "BlasSetMathMode", 16, 16, Staging::kNone},
        {RequestKind::kBlasSetWorkspace, "BlasSetWorkspace", 24, 24, Staging::kNone},
        {RequestKind::kBlasGemm, "BlasGemm", 136, 136, Staging::kNone},
        {RequestKind::kHostFuncEnqueue, "HostFuncEnqueue", 16, 16, Staging::kNone},
        {RequestKind::kHostFuncWait, "HostFuncWait", 0, 0, Staging::kNone},
        {RequestKind::kBlasTrsmBatched, "BlasTrsmBatched", 72, 72, Staging::kNone},
        {RequestKind::kVmmGranularity, "VmmGranularity", 8, 8, Staging::kNone},
        {RequestKind::kVmmAddressReserve, "VmmAddressReserve", 32, 32, Staging::kNone},
        {RequestKind::kVmmAddressFree, "VmmAddressFree", 16, 16, Staging::kNone},
        {RequestKind::kVmmCreate, "VmmCreate", 24, 24, Staging::kNone},
        {RequestKind::kVmmRelease, "VmmRelease", 8, 8, Staging::kNone},
        {RequestKind::kVmmMap, "VmmMap", 40, 40, Staging::kNone},
        {RequestKind::kVmmUnmap, "VmmUnmap", 16, 16, Staging::kNone},
        {RequestKind::kVmmSetAccess, "VmmSetAccess", 72, 72, Staging::kNone},
        {RequestKind::kFuncGetAttributes, "FuncGetAttributes", 16, 16, Staging::kNone},
        {RequestKind::kFuncSetAttribute, "FuncSetAttribute", 16, 16, Staging::kNone},
        {RequestKind::kFuncSetCacheConfig, "FuncSetCacheConfig", 16, 16, Staging::kNone},
        {RequestKind::kOccupancy, "Occupancy", 24, 24, Staging::kNone},
        {RequestKind::kModuleGetGlobal, "ModuleGetGlobal", 8, 8, Staging::kToBroker},
        {RequestKind::kDeviceLimit, "DeviceLimit", 16, 16, Staging::kNone},
        {RequestKind::kSessionError, "SessionError", 0, 0, Staging::kFromBroker},
        {RequestKind::kBlasLtMatmul, "BlasLtMatmul", 224, 224, Staging::kNone},
    }};

// The shape of a kind, or nullptr for a value outside the table.
constexpr const RequestShape* shape_of(std::uint16_t kind) {
  return kind < kRequestShapes.size() ? &kRequestShapes[kind] : nullptr;
}

// Result of kStageChecksum and kArenaChecksum.
struct ChecksumResult {
  std::uint64_t bytes;
  std::uint64_t checksum;
};

// Payload of kArenaChecksum.
struct ArenaRange {
  std::uint64_t offset;
  std::uint64_t bytes;
};

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
  std::uint32_t value;  // the byte value, in the low 8 bits
  std::uint32_t flags;  // CopyFlags
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
// cublasStrsmBatched: a and b are device arrays of batch_count device pointers; alpha by value.
struct BlasTrsmRequest {
  std::uint64_t handle;
  std::int32_t side, uplo, trans, diag, m, n, lda, ldb, batch_count;
  std::int32_t reserved;
  std::uint64_t a, b;
  float alpha;
  std::uint32_t reserved2;
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

// The bytes of a payload or result struct, as they go into a slot or a mailbox.
template <class T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span<const T, 1>(&value, 1));
}

// A request's payload read as T, from the broker's private copy of the slot (bytes past the
// payload's length are the slot's, so a short payload reads as zeros, never out of bounds).
template <class T>
T payload_as(const RequestSlot& request) {
  static_assert(sizeof(T) <= kInlinePayloadBytes);
  T value{};
  std::memcpy(&value, request.payload, sizeof(T));
  return value;
}

}  // namespace gpubroker::wire
