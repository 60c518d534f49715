// One client's device state in the broker: a thin owner of the session's areas (memory, streams
// and events, modules and launches, BLAS, VMM, graphs, host functions), each in a file of its own
// with its own tables. Every object a client created lives in the table of its area, looked up
// only there, accounted against the session's memory limit, and released by its owner
// (owned.h), so reclaiming a session is destroying it.
//
// A DeviceSession serves the device request kinds of one ServerSession: handle() reads the kind,
// and the dispatch generated from the call table (gpubroker/calls/cuda_calls.h) calls the row's
// handler, area().handler(call, payload). handle() runs on that session's dispatcher thread;
// completions of synchronizing requests (stream and event synchronize) are written from the
// driver's callback thread, so the dispatcher never waits for device work.
//
// Reclaim order: the destructor first lets the session's queued work and callbacks finish
// (quiesce), then the areas go in reverse order of their members below: the device timeline of a
// traced session (session_timeline.h), host functions, graphs, BLAS handles, modules, events and
// streams, VMM, and last the memory and pinned ranges they used.
//
// Devices: each request runs against the device its header names (wire::RequestHeader::device,
// the client thread's current device) or, where its payload names one (an allocation, a memory
// figure, a VMM allocation), that one. Every object remembers the DeviceContext that made it, and
// later work on it, and its release, run through that context (device_context.h). As in CUDA, a
// kernel launches only onto a stream of the current device, an event records only on a stream of
// its own device, and copies may cross devices (between devices they are peer copies).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "broker/call.h"
#include "broker/device_layer.h"
#include "broker/session_blas.h"
#include "broker/session_graphs.h"
#include "broker/session_host_funcs.h"
#include "broker/session_memory.h"
#include "broker/session_modules.h"
#include "broker/session_streams.h"
#include "broker/session_timeline.h"
#include "broker/session_vmm.h"
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
  // The broker's own host memory a session may make it hold: the module images it has loaded and
  // the objects it is sending (an image, a kernel name, a parameter block) while they arrive.
  // 0: no limit.
  std::uint64_t host_memory_bytes = 0;
};

class DeviceSession {
 public:
  // `contexts`: where the session's work runs (DeviceLayer::contexts_for its user).
  DeviceSession(const DeviceLayer& device, std::shared_ptr<const ContextGroup> contexts, const SessionLimits& limits,
                BrokerCounters& counters);
  DeviceSession(const DeviceSession&) = delete;
  DeviceSession& operator=(const DeviceSession&) = delete;
  ~DeviceSession();  // reclaims everything

  // Serves one request of a device kind (see wire::RequestKind); the contract of RequestHandler.
  ipc::Result<void> handle(ipc::ServerSession& session, const wire::RequestSlot& request);

  // For the stats: what the session holds, and the bytes its last request moved.
  [[nodiscard]] std::uint64_t device_bytes() const { return device_bytes_; }
  [[nodiscard]] std::uint64_t pinned_bytes() const { return memory_.pinned_bytes(); }
  struct Traffic {
    std::uint64_t to_device = 0;
    std::uint64_t from_device = 0;
  };
  Traffic take_traffic() { return std::exchange(traffic_, Traffic{}); }
  [[nodiscard]] bool last_call_failed() const { return last_call_failed_; }

  // ---- For the areas (the dispatcher thread) ----
  [[nodiscard]] const DeviceLayer& device() const { return device_; }
  [[nodiscard]] BrokerCounters& counters() { return counters_; }
  SessionMemory& memory() { return memory_; }
  SessionStreams& streams() { return streams_; }
  SessionModules& modules() { return modules_; }
  SessionBlas& blas() { return blas_; }
  SessionVmm& vmm() { return vmm_; }
  SessionGraphs& graphs() { return graphs_; }
  SessionHostFuncs& host_funcs() { return host_funcs_; }
  SessionTimeline& timeline() { return timeline_; }
  DeviceSession& core() { return *this; }

  // The session's memory: its allocations, its modules' global variables and its VMM mappings
  // with access granted. Every pointer the broker acts on for the client is checked here.
  [[nodiscard]] bool owns_range(std::uint64_t pointer, std::uint64_t bytes) const;
  // The device of the session's memory at `pointer` (one owns_range() accepted); the current
  // device for any other.
  [[nodiscard]] std::uint32_t device_of(std::uint64_t pointer) const;

  // The device the request in hand names.
  [[nodiscard]] std::uint32_t current_device() const { return current_; }
  [[nodiscard]] std::uint32_t device_count() const { return device_.devices().count; }
  // The context in which the session's calls on `device` run, and the current device's.
  [[nodiscard]] const DeviceContext& context(std::uint32_t device) const { return contexts_->context(device); }
  [[nodiscard]] const DeviceContext& current_context() const { return contexts_->context(current_); }
  // Whether the session's contexts are its user's own (--isolation=uid), not shared by everyone.
  [[nodiscard]] bool isolated() const { return contexts_->isolated(); }

  // Which piece of the session's memory a range is: every allocation, module global variable and
  // VMM mapping gets a serial of its own when it is made, and the epoch moves whenever the session
  // lets go of any. A graph remembers the serials of what its nodes touch; while the epoch stands
  // still nothing it names can have gone, so its launch needs no second look (session_graphs.h).
  std::uint64_t new_memory_serial() { return ++memory_serial_; }
  void memory_released() { ++memory_epoch_; }
  [[nodiscard]] std::uint64_t memory_epoch() const { return memory_epoch_; }
  // The serial of the one piece holding all of [pointer, pointer + bytes) (VMM: of the mappings
  // that do, back to back), or 0 where the session holds no such memory.
  [[nodiscard]] std::uint64_t memory_serial(std::uint64_t pointer, std::uint64_t bytes) const;

  // Device memory the session holds on each device (cuMemAlloc and VMM alike), against its limit.
  [[nodiscard]] bool may_allocate(std::uint32_t device, std::uint64_t bytes) const;
  [[nodiscard]] std::uint64_t device_bytes_on(std::uint32_t device) const { return device_bytes_on_[device]; }
  void count_device_bytes(std::uint32_t device, std::uint64_t bytes);
  void uncount_device_bytes(std::uint32_t device, std::uint64_t bytes);
  [[nodiscard]] const SessionLimits& limits() const { return limits_; }
  // The broker host memory the session holds (SessionLimits::host_memory_bytes): a request may
  // take `bytes` more only when may_hold_host says so, and gives them back when it lets go.
  [[nodiscard]] bool may_hold_host(std::uint64_t bytes) const;
  void count_host_bytes(std::uint64_t bytes) { host_bytes_ += bytes; }
  void uncount_host_bytes(std::uint64_t bytes) { host_bytes_ -= bytes; }
  [[nodiscard]] std::uint64_t host_bytes() const { return host_bytes_; }
  Traffic& traffic() { return traffic_; }

  // Takes the asynchronous error recorded since the last synchronizing call.
  cuda::CUresult take_pending_error(cuda::CUresult current = cuda::CUDA_SUCCESS);
  // Completes a synchronous request now; records an asynchronous failure for the next sync point.
  void finish_request(ipc::ServerSession& session, const wire::RequestHeader& request, int status,
                      std::span<const std::byte> result = {});
  // Records the failure of a call already answered, for the next synchronizing call.
  void fail_later(const ipc::ServerSession& session, int status);
  // Records `status` as the session's sticky error if it is a kind that poisons a context;
  // `kernel` names the launch that failed so.
  void note_sticky(const ipc::ServerSession& session, cuda::CUresult status, const std::string* kernel = nullptr);
  // The sticky error, shared with the completion poller's callbacks (finish_deferred).
  std::atomic<int>& sticky_error() { return sticky_error_; }
  // Driver callbacks that point at this session; it is destroyed only once they are done.
  std::atomic<std::uint32_t>& callbacks_in_flight() { return callbacks_in_flight_; }

  // ---- Handlers of the `core` rows ----
  Outcome<wire::BrokerTotals> totals(CallContext& call, wire::NoPayload);
  Outcome<std::uint64_t> limit(CallContext& call, const wire::LimitRequest& request);
  Outcome<wire::NoReply> error_report(CallContext& call, wire::NoPayload);

 private:
  template <class Reply>
  ipc::Result<void> conclude(CallContext& call, const Outcome<Reply>& outcome);
  ipc::Result<void> dispatch(CallContext& call);
  // Fails a request unserved (`blas_status` for the cuBLAS kinds), its staged bytes kept in step.
  ipc::Result<void> refuse(CallContext& call, cuda::CUresult status, int blas_status);
  // Lets the client's queued work and every callback that points at the session finish.
  void quiesce();

  const DeviceLayer& device_;
  std::shared_ptr<const ContextGroup> contexts_;  // outlives the areas, whose objects live in it
  SessionLimits limits_;
  BrokerCounters& counters_;
  // Counts the session in the broker's totals from its construction until after its areas are
  // destroyed (it is destroyed last), so that no one sees the session gone while what it held is
  // still being released.
  struct Counted {
    explicit Counted(BrokerCounters& counters) : counters(counters) {
      counters.sessions.fetch_add(1, std::memory_order_relaxed);
    }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;
    ~Counted() { counters.sessions.fetch_sub(1, std::memory_order_relaxed); }
    BrokerCounters& counters;
  };
  Counted counted_;
  std::uint32_t current_ = 0;  // the device the request in hand names
  bool served_device_request_ = false;  // whether the client ever reached a device
  std::uint64_t host_bytes_ = 0;
  std::uint64_t memory_serial_ = 0;
  std::uint64_t memory_epoch_ = 0;
  std::uint64_t device_bytes_ = 0;  // on every device
  std::array<std::uint64_t, wire::kMaxDevices> device_bytes_on_{};
  Traffic traffic_;
  bool last_call_failed_ = false;
  cuda::CUresult pending_error_ = cuda::CUDA_SUCCESS;  // dispatcher thread only
  // A kernel fault or launch failure, sticky for the session as error 719 is for a context: once
  // set, every later device request fails with it. Set by the dispatcher (a launch or a
  // synchronous call that failed so) or by the completion poller (a synchronization that found
  // the fault); relaxed, since nothing else is published with it. failed_kernel_ is the
  // dispatcher's, written before it sets sticky_error_ from a launch.
  std::atomic<int> sticky_error_{0};
  std::string failed_kernel_;
  std::atomic<std::uint32_t> callbacks_in_flight_{0};  // pairs with the callbacks' release decrement

  // The areas, destroyed in reverse order (see the top of this file).
  SessionMemory memory_;
  SessionVmm vmm_;
  SessionStreams streams_;
  SessionModules modules_;
  SessionBlas blas_;
  SessionGraphs graphs_;
  SessionHostFuncs host_funcs_;
  SessionTimeline timeline_;  // first to go: it waits for the timed work and writes it out
};

}  // namespace gpubroker::broker
