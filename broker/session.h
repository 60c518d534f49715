// One client's device state in the broker: its allocations, streams, events and pinned host-arena
// ranges, looked up only in this session's own tables, accounted against the session's memory
// limit, and reclaimed when the session ends, whatever the client did.
//
// A DeviceSession serves the device request kinds of one ServerSession. handle() runs on that
// session's dispatcher thread; completions of synchronizing requests (stream and event
// synchronize) are written from the driver's callback thread, so the dispatcher never waits for
// device work. The destructor waits for those callbacks, then frees everything.
//
// Devices: each request runs against the device its header names (wire::RequestHeader::device,
// the client thread's current device) or, where its payload names one (an allocation, a memory
// figure, a VMM allocation), that one. Every object remembers the device whose context made it,
// and later work on it runs in that context: the dispatcher makes a device's context current only
// when the device it works for changes. As in CUDA, a kernel launches only onto a stream of the
// current device, an event records only on a stream of its own device, and copies may cross
// devices (between devices they are peer copies).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "broker/device_layer.h"
#include "ipc/server_session.h"

namespace gpubroker::broker {

// What all sessions hold together, kept current by each session (relaxed atomics: read by the
// BrokerTotals request and by the stats publisher, never used for decisions).
struct BrokerCounters {
  std::atomic<std::uint64_t> sessions{0};
  std::atomic<std::uint64_t> device_bytes{0};
  std::array<std::atomic<std::uint64_t>, wire::kMaxDevices> device_bytes_on{};  // by broker ordinal
  std::atomic<std::uint64_t> allocations{0};
  std::atomic<std::uint64_t> streams{0};
  std::atomic<std::uint64_t> events{0};
  std::atomic<std::uint64_t> arena_registrations{0};
  std::atomic<std::uint64_t> graphs{0};
  std::atomic<std::uint64_t> modules{0};
  std::atomic<std::uint64_t> blas_handles{0};
  std::atomic<std::uint64_t> staged_bytes{0};
  std::atomic<std::uint64_t> zero_copy_bytes{0};
};

// The limit is per device, as MPS's pinned device memory limit is: on each device the session may
// hold this much, and kMemGetInfo shows it as that device's total. (A limit on the sum would make
// every device report the same free bytes, which a program splitting its work across devices by
// their free memory would count twice.)
struct SessionLimits {
  std::uint64_t device_memory_bytes = 0;  // per device; 0: no limit beyond the device's own
};

class DeviceSession {
 public:
  DeviceSession(const DeviceLayer& device, const SessionLimits& limits, BrokerCounters& counters);
  DeviceSession(const DeviceSession&) = delete;
  DeviceSession& operator=(const DeviceSession&) = delete;
  ~DeviceSession();  // reclaims everything

  // Serves one request of a device kind (see wire::RequestKind); the contract of RequestHandler.
  ipc::Result<void> handle(ipc::ServerSession& session, const wire::RequestSlot& request);

  // For the stats: what the session holds, and the bytes its last request moved.
  [[nodiscard]] std::uint64_t device_bytes() const { return allocated_bytes_; }
  [[nodiscard]] std::uint64_t pinned_bytes() const { return pinned_bytes_; }
  struct Traffic {
    std::uint64_t to_device = 0;
    std::uint64_t from_device = 0;
  };
  Traffic take_traffic() { return std::exchange(traffic_, Traffic{}); }
  [[nodiscard]] bool last_call_failed() const { return last_call_failed_; }

 private:
  using CUresult = cuda::CUresult;

  struct Allocation {
    std::uint64_t bytes;
    std::uint32_t device;  // broker ordinal
  };
  // A driver object of the session and the device whose context made it.
  template <class Handle>
  struct OnDevice {
    Handle handle;
    std::uint32_t device;
  };
  static constexpr std::uint32_t kNoDevice = ~0u;

  // Takes the device a request names (RequestHeader::device) as the current device and makes its
  // context current; CUDA_ERROR_INVALID_DEVICE for a device the broker does not have.
  CUresult select_device(const wire::RequestHeader& request);
  // Makes `device`'s context current on the dispatcher thread, if it is not already.
  void bind(std::uint32_t device);
  // The device of the session's memory at `pointer` (one owns_range() accepted).
  [[nodiscard]] std::uint32_t device_of(std::uint64_t pointer) const;
  // A device-to-device copy on `stream`, a peer copy where the two ranges lie on different devices.
  CUresult copy_between_devices(const wire::CopyRequest& copy, cuda::CUstream stream);
  // Whether `bytes` more on `device` would pass the session's limit there.
  [[nodiscard]] bool over_limit(std::uint32_t device, std::uint64_t bytes) const;
  void hold_device_bytes(std::uint32_t device, std::uint64_t bytes);
  void release_device_bytes(std::uint32_t device, std::uint64_t bytes);
  // A launch needs the function's module and the stream on the current device (as CUDA).
  [[nodiscard]] CUresult check_launch_device(std::uint64_t module) const;

  CUresult memory_alloc(const wire::MemAllocRequest& r, std::uint64_t& pointer);
  CUresult memory_free(std::uint64_t pointer);
  [[nodiscard]] bool owns_range(std::uint64_t pointer, std::uint64_t bytes) const;
  // The driver stream of a session stream id (0, 1 and 2: the session's default stream, created
  // on first use), joined to the others as the legacy default stream requires (join_legacy).
  CUresult stream_for(std::uint64_t id, cuda::CUstream& stream);
  CUresult join_legacy(std::uint64_t key, cuda::CUstream stream);
  void forget_blocking(std::uint64_t key);
  CUresult event_for(std::uint64_t id, cuda::CUevent& event) const;
  // Completes a synchronous request now; records an asynchronous failure for the next sync point.
  ipc::Result<void> finish_request(ipc::ServerSession& session, const wire::RequestHeader& request,
                                   CUresult status, std::span<const std::byte> result = {});
  ipc::Result<void> handle_blas(ipc::ServerSession& session, const wire::RequestSlot& request);
  int gemm(const wire::BlasGemmRequest& r, cuda::cublasHandle_t handle);
  int trsm_batched(const wire::BlasTrsmRequest& r, cuda::cublasHandle_t handle);
  int blas_lt_matmul(const wire::BlasLtMatmulRequest& r);
  // Reads `count` device pointers from the session's memory at `array`, in `stream` order.
  bool read_pointer_array(std::uint64_t array, int count, cuda::CUstream stream, std::vector<std::uint64_t>& out);
  ipc::Result<void> handle_vmm(ipc::ServerSession& session, const wire::RequestSlot& request);
  // True when [pointer, pointer + bytes) lies in the session's VMM mappings, back to back, and
  // (when `accessible_only`) every one of them has had access granted.
  [[nodiscard]] bool vmm_covers(std::uint64_t pointer, std::uint64_t bytes, bool accessible_only) const;
  void vmm_forget_allocation(std::uint64_t id);  // once released and unmapped everywhere
  void reclaim_vmm();
  ipc::Result<void> handle_module(ipc::ServerSession& session, const wire::RequestSlot& request);
  CUresult check_layout(const ipc::ServerSession& session, const ModuleCache::Module& module, const char* name,
                        cuda::CUfunction function) const;
  CUresult launch_with_attributes(const wire::LaunchRequest& launch, cuda::CUfunction function, cuda::CUstream stream,
                                  void** extra);
  ipc::Result<void> handle_graph(ipc::ServerSession& session, const wire::RequestSlot& request);
  ipc::Result<void> copy_staged(ipc::ServerSession& session, const wire::RequestSlot& request);
  void pin_staging(ipc::ServerSession& session);
  CUresult copy_arena(ipc::ServerSession& session, const wire::RequestSlot& request);
  CUresult arena_register(ipc::ServerSession& session, const wire::ArenaRange& range);
  // Completes `request` once `streams` have finished their current work: at once where they have,
  // else from the device's completion poller. The streams are the bound device's (stream_for
  // binds a stream's device).
  void complete_after(ipc::ServerSession& session, const wire::RequestHeader& request,
                      std::span<const cuda::CUstream> streams);
  void complete_after(ipc::ServerSession& session, const wire::RequestHeader& request, cuda::CUstream stream);
  void complete_after_all_streams(ipc::ServerSession& session, const wire::RequestHeader& request);
  [[nodiscard]] bool any_capturing(std::span<const cuda::CUstream> streams) const;
  // Takes the asynchronous error recorded since the last synchronizing call.
  CUresult take_pending_error(CUresult current = cuda::CUDA_SUCCESS);
  ipc::Result<void> handle_host_func(ipc::ServerSession& session, const wire::RequestSlot& request);
  static void host_func_ready(void* context);  // a driver callback: see HostFuncs
  void reclaim();

  const DeviceLayer& device_;
  const cuda::DriverTable& driver_;
  SessionLimits limits_;
  BrokerCounters& counters_;
  std::uint32_t current_ = 0;         // the device the request in hand names
  std::uint32_t bound_ = kNoDevice;  // the device whose context is current on the dispatcher thread
  bool staging_registered_ = false;
  void* staging_base_ = nullptr;

  std::map<std::uint64_t, Allocation> allocations_;  // by device address
  std::uint64_t allocated_bytes_ = 0;  // on every device
  // Ids 0, 1 and 2 name the current device's default stream, which is kept under
  // default_stream_key(device); the client may create no stream with an id of that range.
  std::unordered_map<std::uint64_t, OnDevice<cuda::CUstream>> streams_;
  std::unordered_map<std::uint64_t, OnDevice<cuda::CUevent>> events_;
  struct BlockingStreams {
    std::unordered_set<std::uint64_t> streams;           // created without cudaStreamNonBlocking
    std::unordered_set<std::uint64_t> ahead_of_default;  // with work the default stream has not joined
    std::unordered_set<std::uint64_t> behind_default;    // not yet joined to the default stream's work
    std::unordered_map<std::uint64_t, cuda::CUevent> events;  // one per stream that joins another
  };
  // What the session has on each device beside its tables' objects (by broker ordinal).
  struct PerDevice {
    BlockingStreams blocking;  // the legacy default stream's joins, within the device
    cuda::CUstream sync_stream = nullptr;  // where event waits are turned into callbacks
    std::vector<cuda::CUevent> staging_events;  // kStagingWindow + 1, created on first use
    cuda::lt::cublasLtHandle_t blas_lt = nullptr;  // the session's cuBLASLt handle, made on first use
    std::uint64_t allocated_bytes = 0;  // what the session holds there (its limit is per device)
  };
  std::vector<PerDevice> per_device_;
  std::unordered_map<std::uint64_t, OnDevice<cuda::CUgraph>> graphs_;
  std::unordered_map<std::uint64_t, OnDevice<cuda::CUgraphExec>> graph_execs_;
  std::unordered_map<std::uint64_t, std::shared_ptr<const ModuleCache::Module>> modules_;
  struct Function {
    cuda::CUfunction handle;
    std::uint64_t module;  // the id in modules_
    std::string name;      // mangled, for the report of a failed launch
  };
  std::unordered_map<std::uint64_t, Function> functions_;
  struct Global {  // a module's global variable: the session's memory while the module lives
    std::uint64_t bytes;
    std::uint64_t module;
  };
  std::map<std::uint64_t, Global> globals_;  // by device address
  std::unordered_map<std::uint64_t, OnDevice<cuda::cublasHandle_t>> blas_handles_;
  // VMM (the libcuda.so.1 shim's pool): the session's reserved address ranges, its physical
  // allocations (by the session-local id the client holds) and its mappings. Mapped ranges with
  // access granted count as the session's memory for copies, memsets, launches and GEMMs.
  struct VmmAllocation {
    cuda::CUmemGenericAllocationHandle handle;
    std::uint64_t bytes;
    std::uint32_t device;  // broker ordinal of its memory
    std::uint32_t mappings = 0;
    bool released = false;  // the client's id is gone; the memory lives while mapped
  };
  struct VmmMapping {
    std::uint64_t bytes;
    std::uint64_t allocation;  // id in vmm_allocations_
    bool accessible = false;
  };
  std::map<std::uint64_t, std::uint64_t> vmm_reservations_;  // address -> bytes
  std::map<std::uint64_t, VmmAllocation> vmm_allocations_;   // by id
  std::map<std::uint64_t, VmmMapping> vmm_mappings_;         // by address
  std::uint64_t next_vmm_allocation_ = 1;
  std::uint64_t vmm_reserved_bytes_ = 0;
  // What one session may hold, so that no client can exhaust the broker's address space or its
  // kernel mapping count (vm.max_map_count) for the others. ggml reserves 32 GiB per device and
  // maps it in granules of at least 2 MiB.
  static constexpr std::uint64_t kMaxVmmReservedBytes = 1ull << 42;  // 4 TiB
  static constexpr std::size_t kMaxVmmReservations = 1024;
  static constexpr std::size_t kMaxVmmMappings = 16384;
  struct PinnedRange {
    void* host;
    std::uint64_t bytes;
  };
  std::map<std::uint64_t, PinnedRange> arena_ranges_;  // registered, by arena offset
  std::uint64_t pinned_bytes_ = 0;
  Traffic traffic_;
  bool last_call_failed_ = false;
  // Staged copies keep this many pipe chunks in flight, each followed by an event of its own.
  static constexpr unsigned kStagingWindow = 8;
  // The largest image, name or parameter block a session may stage in one request.
  static constexpr std::uint64_t kMaxStagedObjectBytes = 1ull << 30;

  // Host functions run in the client (wire::HostFuncRequest): a driver host function hands each
  // id, in stream order, to the client's waiting kHostFuncWait (or queues it until one comes).
  // Nothing in the driver ever waits for the client, so no client can stall the shared context.
  struct HostFuncs {
    std::mutex lock;  // the dispatcher and the driver's callback thread
    std::deque<std::uint64_t> ready;
    std::optional<wire::RequestHeader> waiter;  // the client's kHostFuncWait, until one is ready
    ipc::ServerSession* session = nullptr;
    bool closed = false;  // the session is being reclaimed
  };
  HostFuncs host_funcs_;

  CUresult pending_error_ = cuda::CUDA_SUCCESS;  // dispatcher thread only
  // A kernel fault or launch failure, sticky for the session as error 719 is for a context: once
  // set, every later device request fails with it. Set by the dispatcher (a launch or a
  // synchronous call that failed so) or by the completion poller (a synchronization that found
  // the fault); relaxed, since nothing else is published with it. failed_kernel_ is the
  // dispatcher's, written before it sets sticky_error_ from a launch.
  std::atomic<int> sticky_error_{0};
  std::string failed_kernel_;
  // Records `status` as the session's sticky error if it is a kind that poisons a context.
  void note_sticky(const ipc::ServerSession& session, CUresult status, const Function* launched = nullptr);
  ipc::Result<void> report_session_error(ipc::ServerSession& session, const wire::RequestHeader& request);
  ipc::Result<void> refuse_poisoned(ipc::ServerSession& session, const wire::RequestSlot& request, CUresult sticky);
  // Fails a request unserved (`blas_status` for the cuBLAS kinds), its staged bytes kept in step.
  ipc::Result<void> refuse_request(ipc::ServerSession& session, const wire::RequestSlot& request, CUresult status,
                                   int blas_status);
  std::atomic<std::uint32_t> callbacks_in_flight_{0};  // pairs with the callbacks' decrement
};

}  // namespace gpubroker::broker
