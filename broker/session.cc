#include "broker/session.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>

#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

// The kinds whose rows are in the `blas` area: their status is a cublasStatus_t.
constexpr auto kBlasKinds = [] {
  std::array<bool, static_cast<std::size_t>(wire::RequestKind::kCount)> blas{};
#define GPUBROKER_BLAS_ROW(name, payload, reply, staging, posting, area, handler) \
  blas[static_cast<std::size_t>(wire::RequestKind::k##name)] = std::string_view(#area) == "blas";
  GPUBROKER_CUDA_CALLS(GPUBROKER_BLAS_ROW)
#undef GPUBROKER_BLAS_ROW
  return blas;
}();

}  // namespace

DeviceSession::DeviceSession(const DeviceLayer& device, std::shared_ptr<const ContextGroup> contexts,
                             const SessionLimits& limits, BrokerCounters& counters)
    : device_(device), contexts_(std::move(contexts)), limits_(limits), counters_(counters), counted_(counters), memory_(*this), vmm_(*this), streams_(*this), modules_(*this), blas_(*this), graphs_(*this),
      host_funcs_(*this), timeline_(*this) {}

// The areas go after this, in reverse order of their members (session.h), and the session leaves
// the broker's count last of all.
DeviceSession::~DeviceSession() { quiesce(); }

void DeviceSession::quiesce() {
  host_funcs_.close();
  if (!served_device_request_) return;  // a discovery pass: nothing queued anywhere
  // Wait for the work the client left queued, and for the callbacks that will complete its
  // synchronize requests: they point at this session.
  streams_.synchronize_everything();
  // Pairs with the release decrements of the callbacks (finish_deferred, SessionHostFuncs::ready).
  while (callbacks_in_flight_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  ipc::log(ipc::LogLevel::kDebug, "session quiesced; reclaiming");
}

bool DeviceSession::owns_range(std::uint64_t pointer, std::uint64_t bytes) const {
  return memory_.owns_allocation(pointer, bytes) || modules_.owns_global(pointer, bytes) ||
         vmm_.covers(pointer, bytes, true);
}

std::uint32_t DeviceSession::device_of(std::uint64_t pointer) const {
  if (auto device = memory_.device_of(pointer)) return *device;
  if (auto device = modules_.device_of(pointer)) return *device;
  if (auto device = vmm_.device_of(pointer)) return *device;
  return current_;
}

std::uint64_t DeviceSession::memory_serial(std::uint64_t pointer, std::uint64_t bytes) const {
  if (std::uint64_t serial = memory_.serial_of(pointer, bytes)) return serial;
  if (std::uint64_t serial = modules_.serial_of(pointer, bytes)) return serial;
  return vmm_.serial_of(pointer, bytes);
}

bool DeviceSession::may_hold_host(std::uint64_t bytes) const {
  const std::uint64_t limit = limits_.host_memory_bytes;
  return limit == 0 || (bytes <= limit && host_bytes_ <= limit - bytes);
}

bool DeviceSession::may_allocate(std::uint32_t device, std::uint64_t bytes) const {
  const std::uint64_t limit = limits_.device_memory_bytes;
  return limit == 0 || (bytes <= limit && device_bytes_on_[device] <= limit - bytes);
}

void DeviceSession::count_device_bytes(std::uint32_t device, std::uint64_t bytes) {
  device_bytes_ += bytes;
  device_bytes_on_[device] += bytes;
  counters_.device_bytes.fetch_add(bytes, std::memory_order_relaxed);
  counters_.device_bytes_on[device].fetch_add(bytes, std::memory_order_relaxed);
}

void DeviceSession::uncount_device_bytes(std::uint32_t device, std::uint64_t bytes) {
  device_bytes_ -= bytes;
  device_bytes_on_[device] -= bytes;
  counters_.device_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  counters_.device_bytes_on[device].fetch_sub(bytes, std::memory_order_relaxed);
}

cuda::CUresult DeviceSession::take_pending_error(CUresult current) {
  const CUresult pending = pending_error_;
  pending_error_ = CUDA_SUCCESS;
  return current != CUDA_SUCCESS ? current : pending;
}

void DeviceSession::fail_later(const ipc::ServerSession& session, int status) {
  last_call_failed_ = true;
  note_sticky(session, static_cast<CUresult>(status));
  if (pending_error_ == CUDA_SUCCESS) pending_error_ = static_cast<CUresult>(status);
}

void DeviceSession::finish_request(ipc::ServerSession& session, const wire::RequestHeader& request, int status,
                                   std::span<const std::byte> result) {
  if ((request.flags & wire::kSynchronous) != 0) {
    last_call_failed_ = status != CUDA_SUCCESS;
    note_sticky(session, static_cast<CUresult>(status));
    session.complete(request, take_pending_error(static_cast<CUresult>(status)), result);
  } else if (status != CUDA_SUCCESS) {
    fail_later(session, status);  // an asynchronous failure surfaces at the next synchronizing call
  }
}

void DeviceSession::note_sticky(const ipc::ServerSession& session, CUresult status, const std::string* kernel) {
  if (!cuda::poisons_context(static_cast<int>(status)) || sticky_error_.load(std::memory_order_relaxed) != 0) return;
  // The completion poller may set it at the same time (finish_deferred): the first one wins, and
  // the kernel's name goes with the dispatcher's own error only.
  int clean = 0;
  if (!sticky_error_.compare_exchange_strong(clean, static_cast<int>(status), std::memory_order_relaxed)) return;
  if (kernel != nullptr) failed_kernel_ = *kernel;
  ipc::log(ipc::LogLevel::kWarning, "session {}: CUDA error {}{}{}; sticky: the session's later device calls fail with it",
           session.id(), static_cast<int>(status), kernel != nullptr ? " launching " : "",
           kernel != nullptr ? *kernel : std::string());
}

template <class Reply>
ipc::Result<void> DeviceSession::conclude(CallContext& call, const Outcome<Reply>& outcome) {
  if (outcome.violated()) return outcome.violation();
  if (outcome.later()) return boost::outcome_v2::success();
  if constexpr (std::is_same_v<Reply, wire::NoReply>) {
    finish_request(call.session, call.header(), outcome.status());
  } else {
    finish_request(call.session, call.header(), outcome.status(), wire::bytes_of(outcome.reply()));
  }
  return boost::outcome_v2::success();
}

// One case per row of the call table: a row whose handler is missing does not compile, and a kind
// outside the table never gets here (the transport refuses it).
ipc::Result<void> DeviceSession::dispatch(CallContext& call) {
  using namespace wire;  // the rows name wire types unqualified
  switch (call.kind()) {
#define GPUBROKER_DISPATCH(name, payload, reply, staging, posting, area, handler)                          \
  case RequestKind::k##name: {                                                                              \
    auto outcome = area().handler(call, PayloadReader<payload>::read(call.request));                        \
    static_assert(std::is_same_v<decltype(outcome), Outcome<reply>>, #name "'s handler answers its row's reply"); \
    return conclude(call, outcome);                                                                         \
  }
    GPUBROKER_CUDA_CALLS(GPUBROKER_DISPATCH)
#undef GPUBROKER_DISPATCH
    default:
      break;
  }
  return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
}

ipc::Result<void> DeviceSession::handle(ipc::ServerSession& session, const wire::RequestSlot& request) {
  last_call_failed_ = false;
  CallContext call{session, request};
  // The device the request names is the current one; the handlers run their calls through its
  // context, or through the context of the object they work on.
  if (request.header.device >= device_.devices().count) {
    return refuse(call, cuda::CUDA_ERROR_INVALID_DEVICE, cuda::CUBLAS_STATUS_INVALID_VALUE);
  }
  current_ = request.header.device;
  served_device_request_ = true;
  const wire::RequestKind kind = call.kind();
  if (const int sticky = sticky_error_.load(std::memory_order_relaxed);
      sticky != 0 && kind != wire::RequestKind::kSessionError && kind != wire::RequestKind::kBrokerTotals) {
    return refuse(call, static_cast<CUresult>(sticky), cuda::CUBLAS_STATUS_EXECUTION_FAILED);
  }
  auto handled = dispatch(call);
  if (timeline_.on()) timeline_.collect();
  return handled;
}

// A request refused unserved (a poisoned session, a device that does not exist): its staged bytes
// are drained (or zeros sent) to keep the pipe in step, and it fails with `status` (cuBLAS calls:
// `blas_status`; in a poisoned session CUBLAS_STATUS_EXECUTION_FAILED, as a cuBLAS call in a
// faulted context answers).
ipc::Result<void> DeviceSession::refuse(CallContext& call, CUresult status, int blas_status) {
  const wire::RequestHeader& h = call.header();
  const wire::RequestShape* shape = wire::shape_of(h.kind);
  ipc::Result<void> moved = boost::outcome_v2::success();
  if (shape != nullptr && h.staged_bytes != 0 && shape->staging == wire::Staging::kToBroker) {
    moved = call.session.receive_staged(h.staged_bytes, [](std::span<const std::byte>) {});
  } else if (shape != nullptr && h.staged_bytes != 0 && shape->staging == wire::Staging::kFromBroker) {
    moved = call.session.send_staged(h.staged_bytes, [](std::span<std::byte> piece) { std::ranges::fill(piece, std::byte{0}); });
  }
  if (!moved) return pipe_violation(moved.error());
  const bool blas = h.kind < kBlasKinds.size() && kBlasKinds[h.kind];
  finish_request(call.session, h, blas ? blas_status : static_cast<int>(status));
  return boost::outcome_v2::success();
}

Outcome<wire::BrokerTotals> DeviceSession::totals(CallContext&, wire::NoPayload) {
  return wire::BrokerTotals{counters_.sessions.load(),        counters_.device_bytes.load(),
                            counters_.allocations.load(),     counters_.streams.load(),
                            counters_.events.load(),          counters_.arena_registrations.load(),
                            counters_.graphs.load(),          counters_.staged_bytes.load(),
                            counters_.zero_copy_bytes.load(), counters_.modules.load(),
                            counters_.blas_handles.load()};
}

// Raise-only, and one session at a time, so that a raise is never undone by another's: the context
// is every session's, so a session can raise a limit (a larger stack or heap costs the others
// nothing they rely on) but never lower it.
Outcome<std::uint64_t> DeviceSession::limit(CallContext&, const wire::LimitRequest& l) {
  static std::mutex limits_lock;
  if (l.raise > 1) return CallError{CUDA_ERROR_INVALID_VALUE};
  // The runtime's limits; the driver's newer ones (shared memory, CIG) are not the runtime's.
  if (l.limit < 0 || l.limit >= cuda::CU_LIMIT_MAX) return CallError{cuda::CUDA_ERROR_UNSUPPORTED_LIMIT};
  std::lock_guard lock(limits_lock);
  const DeviceContext& context = current_context();
  std::size_t value = 0;
  CUresult r = context.ctx_get_limit(&value, l.limit);
  // The L2 limits shape how every session's kernels use the cache: not the session's to change.
  const bool shared_cache_limit = l.limit == 5 || l.limit == 6;
  if (r == CUDA_SUCCESS && l.raise == 1 && shared_cache_limit && l.value != value) {
    r = cuda::CUDA_ERROR_NOT_SUPPORTED;
  } else if (r == CUDA_SUCCESS && l.raise == 1 && l.value > value) {
    r = context.ctx_set_limit(l.limit, l.value);
    if (r == CUDA_SUCCESS) r = context.ctx_get_limit(&value, l.limit);
  }
  return answer(r, static_cast<std::uint64_t>(value));
}

// Sent whole, zeros where there is nothing to say; a request for any other size is refused after
// its bytes are sent, so that the pipe stays in step.
Outcome<wire::NoReply> DeviceSession::error_report(CallContext& call, wire::NoPayload) {
  const wire::RequestHeader& h = call.header();
  wire::SessionErrorReport report{};
  report.status = sticky_error_.load(std::memory_order_relaxed);
  if (device_.kind() == DriverKind::kSim) report.flags |= wire::kSessionErrorSimDriver;
  if (report.status != 0) {
    const std::size_t n = std::min(failed_kernel_.size(), sizeof report.kernel - 1);
    std::memcpy(report.kernel, failed_kernel_.data(), n);
  }
  const bool whole = h.staged_bytes == sizeof report;
  std::uint64_t at = 0;
  auto sent = call.session.send_staged(h.staged_bytes, [&](std::span<std::byte> piece) {
    for (std::byte& b : piece) {
      b = whole && at < sizeof report ? reinterpret_cast<const std::byte*>(&report)[at] : std::byte{0};
      ++at;
    }
  });
  if (!sent) return sent.error();
  // Not a call's failure: the report of one, so it is not taken as the session's own error.
  call.session.complete(h, whole ? report.status : static_cast<int>(CUDA_ERROR_INVALID_VALUE));
  return kCompletesLater;
}

}  // namespace gpubroker::broker
