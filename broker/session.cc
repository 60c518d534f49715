#include "broker/session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "fatbin/fatbin.h"
#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

using wire::bytes_of;
using wire::payload_as;

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_ERROR_OUT_OF_MEMORY;
using cuda::CUDA_SUCCESS;

// The keys of the session's per-device default streams in DeviceSession::streams_. The client's
// own stream ids never reach this range: it counts as default stream ids too.
constexpr std::uint64_t kDefaultStreamKeys = 1ull << 63;
std::uint64_t default_stream_key(std::uint32_t device) { return kDefaultStreamKeys + device; }

bool is_default_stream(std::uint64_t id) { return id <= 2 || id >= kDefaultStreamKeys; }

// A completion written by the completion poller once the last of `remaining` streams is done.
struct DeferredCompletion {
  ipc::ServerSession* session;
  wire::RequestHeader request;
  std::atomic<std::uint32_t> remaining;
  std::atomic<cuda::CUresult> status;  // the first failure wins
  std::atomic<std::uint32_t>* in_flight;
  std::atomic<int>* sticky;  // the session's sticky error (DeviceSession::sticky_error_)
};

// The sticky kinds of error (cuda::poisons_context) are kept per session: the session is the
// runner's context.
bool is_sticky(cuda::CUresult status) { return cuda::poisons_context(static_cast<int>(status)); }

// One stream of a DeferredCompletion is done, with `status`.
void finish_deferred(void* context, cuda::CUresult status) {
  auto* deferred = static_cast<DeferredCompletion*>(context);
  cuda::CUresult none = CUDA_SUCCESS;
  if (status != CUDA_SUCCESS) deferred->status.compare_exchange_strong(none, status, std::memory_order_relaxed);
  if (is_sticky(status)) {
    int clean = 0;
    deferred->sticky->compare_exchange_strong(clean, static_cast<int>(status), std::memory_order_relaxed);
  }
  if (deferred->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  deferred->session->complete(deferred->request, deferred->status.load(std::memory_order_relaxed));
  std::atomic<std::uint32_t>* in_flight = deferred->in_flight;
  delete deferred;
  // Pairs with the acquire load in DeviceSession::reclaim(): after this the session may go.
  in_flight->fetch_sub(1, std::memory_order_release);
}

}  // namespace

DeviceSession::DeviceSession(const DeviceLayer& device, const SessionLimits& limits, BrokerCounters& counters)
    : device_(device), driver_(device.driver()), limits_(limits), counters_(counters),
      per_device_(device.devices().count) {
  counters_.sessions.fetch_add(1, std::memory_order_relaxed);
}

DeviceSession::~DeviceSession() {
  reclaim();
  counters_.sessions.fetch_sub(1, std::memory_order_relaxed);
}

cuda::CUresult DeviceSession::take_pending_error(CUresult current) {
  const CUresult pending = pending_error_;
  pending_error_ = CUDA_SUCCESS;
  return current != CUDA_SUCCESS ? current : pending;
}

void DeviceSession::note_sticky(const ipc::ServerSession& session, CUresult status, const Function* launched) {
  if (!is_sticky(status) || sticky_error_.load(std::memory_order_relaxed) != 0) return;
  // The completion poller may set it at the same time (finish_deferred): the first one wins, and
  // the kernel's name goes with the dispatcher's own error only.
  int clean = 0;
  if (!sticky_error_.compare_exchange_strong(clean, static_cast<int>(status), std::memory_order_relaxed)) return;
  if (launched != nullptr) failed_kernel_ = launched->name;
  ipc::log(ipc::LogLevel::kWarning, "session {}: CUDA error {}{}{}; sticky: the session's later device calls fail with it",
           session.id(), static_cast<int>(status), launched != nullptr ? " launching " : "",
           launched != nullptr ? launched->name : std::string());
}

// A request of a poisoned session: its staged bytes are drained (or zeros sent) to keep the pipe in
// step, and it fails with the sticky error (cuBLAS calls: CUBLAS_STATUS_EXECUTION_FAILED, as a
// cuBLAS call in a faulted context answers).
ipc::Result<void> DeviceSession::refuse_poisoned(ipc::ServerSession& session, const wire::RequestSlot& request,
                                                 CUresult sticky) {
  return refuse_request(session, request, sticky, cuda::CUBLAS_STATUS_EXECUTION_FAILED);
}

ipc::Result<void> DeviceSession::refuse_request(ipc::ServerSession& session, const wire::RequestSlot& request,
                                                CUresult status, int blas_status) {
  const wire::RequestHeader& h = request.header;
  const wire::RequestShape* shape = wire::shape_of(h.kind);
  ipc::Result<void> moved = boost::outcome_v2::success();
  if (shape != nullptr && h.staged_bytes != 0 && shape->staging == wire::Staging::kToBroker) {
    moved = session.receive_staged(h.staged_bytes, [](std::span<const std::byte>) {});
  } else if (shape != nullptr && h.staged_bytes != 0 && shape->staging == wire::Staging::kFromBroker) {
    moved = session.send_staged(h.staged_bytes, [](std::span<std::byte> piece) { std::ranges::fill(piece, std::byte{0}); });
  }
  if (!moved) {
    if (moved.error().code == ipc::IpcErrc::kProtocol) {
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kPipePosition)};
    }
    return moved.error();
  }
  const auto kind = static_cast<wire::RequestKind>(h.kind);
  const bool blas = kind == wire::RequestKind::kBlasCreate || kind == wire::RequestKind::kBlasDestroy ||
                    kind == wire::RequestKind::kBlasSetStream || kind == wire::RequestKind::kBlasSetMathMode ||
                    kind == wire::RequestKind::kBlasSetWorkspace || kind == wire::RequestKind::kBlasGemm ||
                    kind == wire::RequestKind::kBlasTrsmBatched || kind == wire::RequestKind::kBlasLtMatmul;
  return finish_request(session, h, blas ? static_cast<CUresult>(blas_status) : status);
}

// Sent whole, zeros where there is nothing to say; a request for any other size is refused after
// its bytes are sent, so that the pipe stays in step.
ipc::Result<void> DeviceSession::report_session_error(ipc::ServerSession& session, const wire::RequestHeader& h) {
  wire::SessionErrorReport report{};
  report.status = sticky_error_.load(std::memory_order_relaxed);
  if (device_.kind() == DriverKind::kSim) report.flags |= wire::kSessionErrorSimDriver;
  if (report.status != 0) {
    const std::size_t n = std::min(failed_kernel_.size(), sizeof report.kernel - 1);
    std::memcpy(report.kernel, failed_kernel_.data(), n);
  }
  const bool whole = h.staged_bytes == sizeof report;
  std::uint64_t at = 0;
  auto sent = session.send_staged(h.staged_bytes, [&](std::span<std::byte> piece) {
    for (std::byte& b : piece) {
      b = whole && at < sizeof report ? reinterpret_cast<const std::byte*>(&report)[at] : std::byte{0};
      ++at;
    }
  });
  if (!sent) return sent.error();
  session.complete(h, whole ? report.status : static_cast<int>(CUDA_ERROR_INVALID_VALUE));
  return boost::outcome_v2::success();
}

namespace {

// Whether [pointer, pointer + bytes) lies inside one of `ranges` (start address -> an entry with
// a `bytes` member).
template <class Map>
bool inside_one(const Map& ranges, std::uint64_t pointer, std::uint64_t bytes) {
  auto it = ranges.upper_bound(pointer);
  if (it == ranges.begin()) return false;
  --it;
  const std::uint64_t offset = pointer - it->first;
  return offset <= it->second.bytes && bytes <= it->second.bytes - offset;
}

}  // namespace

// The session's memory: its allocations, its modules' global variables and its VMM mappings.
bool DeviceSession::owns_range(std::uint64_t pointer, std::uint64_t bytes) const {
  return inside_one(allocations_, pointer, bytes) || inside_one(globals_, pointer, bytes) ||
         vmm_covers(pointer, bytes, true);
}

// ---- Devices ------------------------------------------------------------------------------------

cuda::CUresult DeviceSession::select_device(const wire::RequestHeader& request) {
  if (request.device >= per_device_.size()) return cuda::CUDA_ERROR_INVALID_DEVICE;
  current_ = request.device;
  bind(current_);
  return CUDA_SUCCESS;
}

// One comparison while the device stays the same: a single-device session binds once.
void DeviceSession::bind(std::uint32_t device) {
  if (device == bound_) return;
  device_.bind_thread(device);
  bound_ = device;
}

std::uint32_t DeviceSession::device_of(std::uint64_t pointer) const {
  auto containing = [&](const auto& ranges) {
    auto it = ranges.upper_bound(pointer);
    return it == ranges.begin() ? ranges.end() : std::prev(it);
  };
  if (auto it = containing(allocations_); it != allocations_.end() && pointer - it->first < it->second.bytes) {
    return it->second.device;
  }
  if (auto it = containing(globals_); it != globals_.end() && pointer - it->first < it->second.bytes) {
    return modules_.at(it->second.module)->device;
  }
  if (auto it = containing(vmm_mappings_); it != vmm_mappings_.end()) {
    return vmm_allocations_.at(it->second.allocation).device;
  }
  return current_;
}

// Unified addressing lets one copy name both ends; where they lie on two devices the copy is a
// peer copy, with each end's own context, so that it needs no peer access between the contexts.
cuda::CUresult DeviceSession::copy_between_devices(const wire::CopyRequest& copy, cuda::CUstream stream) {
  const std::uint32_t to = device_of(copy.destination), from = device_of(copy.source);
  if (to == from) return driver_.memcpy_dtod_async(copy.destination, copy.source, copy.bytes, stream);
  return driver_.memcpy_peer_async(copy.destination, device_.context(to), copy.source, device_.context(from), copy.bytes,
                                   stream);
}

bool DeviceSession::over_limit(std::uint32_t device, std::uint64_t bytes) const {
  const std::uint64_t limit = limits_.device_memory_bytes;
  return limit != 0 && (bytes > limit || per_device_[device].allocated_bytes > limit - bytes);
}

void DeviceSession::hold_device_bytes(std::uint32_t device, std::uint64_t bytes) {
  allocated_bytes_ += bytes;
  per_device_[device].allocated_bytes += bytes;
  counters_.device_bytes.fetch_add(bytes, std::memory_order_relaxed);
  counters_.device_bytes_on[device].fetch_add(bytes, std::memory_order_relaxed);
}

void DeviceSession::release_device_bytes(std::uint32_t device, std::uint64_t bytes) {
  allocated_bytes_ -= bytes;
  per_device_[device].allocated_bytes -= bytes;
  counters_.device_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  counters_.device_bytes_on[device].fetch_sub(bytes, std::memory_order_relaxed);
}

// CUDA refuses a launch onto a stream of another device than the current one (the stream is bound
// by stream_for), and a function is of the device its module was loaded on.
cuda::CUresult DeviceSession::check_launch_device(std::uint64_t module) const {
  if (bound_ != current_ || modules_.at(module)->device != current_) return CUDA_ERROR_INVALID_HANDLE;
  return CUDA_SUCCESS;
}

cuda::CUresult DeviceSession::memory_alloc(const wire::MemAllocRequest& r, std::uint64_t& pointer) {
  if (r.device >= device_.devices().count) return cuda::CUDA_ERROR_INVALID_DEVICE;
  if (r.bytes == 0) {
    pointer = 0;
    return CUDA_SUCCESS;
  }
  if (over_limit(r.device, r.bytes)) return CUDA_ERROR_OUT_OF_MEMORY;
  bind(r.device);
  cuda::CUdeviceptr address = 0;
  if (CUresult result = driver_.mem_alloc(&address, r.bytes); result != CUDA_SUCCESS) return result;
  allocations_[address] = Allocation{r.bytes, r.device};
  hold_device_bytes(r.device, r.bytes);
  counters_.allocations.fetch_add(1, std::memory_order_relaxed);
  pointer = address;
  return CUDA_SUCCESS;
}

cuda::CUresult DeviceSession::memory_free(std::uint64_t pointer) {
  if (pointer == 0) return CUDA_SUCCESS;  // cudaFree(nullptr)
  auto it = allocations_.find(pointer);
  if (it == allocations_.end()) return CUDA_ERROR_INVALID_VALUE;  // not this session's
  // cuMemFree synchronizes with outstanding work on the memory, as cudaFree does.
  bind(it->second.device);
  const CUresult result = driver_.mem_free(pointer);
  release_device_bytes(it->second.device, it->second.bytes);
  counters_.allocations.fetch_sub(1, std::memory_order_relaxed);
  allocations_.erase(it);
  return result;
}

cuda::CUresult DeviceSession::stream_for(std::uint64_t id, cuda::CUstream& stream) {
  const std::uint64_t key = is_default_stream(id) ? default_stream_key(current_) : id;
  if (auto it = streams_.find(key); it != streams_.end()) {
    stream = it->second.handle;
    bind(it->second.device);  // work on a stream runs in its own device's context
    if (!per_device_[it->second.device].blocking.streams.empty()) return join_legacy(key, stream);
    return CUDA_SUCCESS;
  }
  if (key != default_stream_key(current_)) return CUDA_ERROR_INVALID_HANDLE;
  // The session's own default stream of the current device: created on first use, so that one
  // session's default stream never serializes another's.
  bind(current_);
  if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0); r != CUDA_SUCCESS) {
    return r;
  }
  streams_[key] = OnDevice<cuda::CUstream>{stream, current_};
  counters_.streams.fetch_add(1, std::memory_order_relaxed);
  return CUDA_SUCCESS;
}

// The legacy default stream's contract, within the session and the device (each device has its
// own): work on the default stream waits for the work already on every blocking stream (created
// without cudaStreamNonBlocking), and work on a blocking stream waits for the work already on the
// default stream. Each join is an event record and a wait, made only when the other side has had
// work since the last join; a session without blocking streams never comes here. The stream's
// device is the bound one.
cuda::CUresult DeviceSession::join_legacy(std::uint64_t key, cuda::CUstream stream) {
  BlockingStreams& blocking = per_device_[bound_].blocking;
  const std::uint64_t default_key = default_stream_key(bound_);
  auto join = [&](std::uint64_t from_key, cuda::CUstream from, cuda::CUstream to) -> CUresult {
    cuda::CUevent& event = blocking.events[from_key];
    if (event == nullptr) {
      if (CUresult r = driver_.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING); r != CUDA_SUCCESS) return r;
    }
    if (CUresult r = driver_.event_record(event, from); r != CUDA_SUCCESS) return r;
    return driver_.stream_wait_event(to, event, 0);
  };
  if (key == default_key) {
    for (std::uint64_t b : blocking.ahead_of_default) {
      if (CUresult r = join(b, streams_.at(b).handle, stream); r != CUDA_SUCCESS) return r;
    }
    blocking.ahead_of_default.clear();
    blocking.behind_default = blocking.streams;
    return CUDA_SUCCESS;
  }
  if (!blocking.streams.contains(key)) return CUDA_SUCCESS;
  if (blocking.behind_default.erase(key) != 0) {
    if (CUresult r = join(default_key, streams_.at(default_key).handle, stream); r != CUDA_SUCCESS) return r;
  }
  blocking.ahead_of_default.insert(key);
  return CUDA_SUCCESS;
}

void DeviceSession::forget_blocking(std::uint64_t key) {
  BlockingStreams& blocking = per_device_[streams_.at(key).device].blocking;
  blocking.streams.erase(key);
  blocking.ahead_of_default.erase(key);
  blocking.behind_default.erase(key);
  if (auto it = blocking.events.find(key); it != blocking.events.end()) {
    driver_.event_destroy(it->second);
    blocking.events.erase(it);
  }
}

cuda::CUresult DeviceSession::event_for(std::uint64_t id, cuda::CUevent& event) const {
  auto it = events_.find(id);
  if (it == events_.end()) return CUDA_ERROR_INVALID_HANDLE;
  event = it->second.handle;
  return CUDA_SUCCESS;
}

// A host function launched into a capturing stream is captured, not run: a synchronize completed
// that way would never complete, and the session could never be reclaimed. CUDA refuses to
// synchronize a capturing stream, and so does the broker.
bool DeviceSession::any_capturing(std::span<const cuda::CUstream> streams) const {
  for (cuda::CUstream stream : streams) {
    cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
    if (driver_.stream_is_capturing(stream, &capturing) == CUDA_SUCCESS && capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
      return true;
    }
  }
  return false;
}

void DeviceSession::complete_after(ipc::ServerSession& session, const wire::RequestHeader& request,
                                   std::span<const cuda::CUstream> streams) {
  if (any_capturing(streams)) {
    (void)finish_request(session, request, cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    return;
  }
  auto* deferred = new DeferredCompletion{&session, request, {static_cast<std::uint32_t>(streams.size())},
                                          {take_pending_error()}, &callbacks_in_flight_, &sticky_error_};
  callbacks_in_flight_.fetch_add(1, std::memory_order_relaxed);
  for (cuda::CUstream stream : streams) {
    // A stream with nothing left to do answers at once; the others when the poller sees them done.
    const CUresult idle = driver_.stream_query(stream);
    if (idle == cuda::CUDA_ERROR_NOT_READY) {
      if (CUresult r = device_.completions(bound_).watch(stream, finish_deferred, deferred); r != CUDA_SUCCESS) {
        finish_deferred(deferred, r);  // counts for this stream; the others still finish theirs
      }
    } else {
      finish_deferred(deferred, idle);
    }
  }
}

void DeviceSession::complete_after(ipc::ServerSession& session, const wire::RequestHeader& request,
                                   cuda::CUstream stream) {
  complete_after(session, request, std::span(&stream, 1));
}

// The current device's streams, as cudaDeviceSynchronize covers the current device only.
void DeviceSession::complete_after_all_streams(ipc::ServerSession& session, const wire::RequestHeader& request) {
  cuda::CUstream default_stream = nullptr;
  (void)stream_for(0, default_stream);
  std::vector<cuda::CUstream> all;
  for (const auto& [id, stream] : streams_) {
    if (stream.device == current_) all.push_back(stream.handle);
  }
  bind(current_);
  complete_after(session, request, all);
}

void DeviceSession::pin_staging(ipc::ServerSession& session) {
  if (staging_base_ != nullptr) return;
  // At the first pageable copy rather than the session's first call: pinning the pipes takes
  // milliseconds on a GPU, and a discovery pass never copies. Unpinned, copies still work (the
  // driver stages them itself), only slower.
  auto staging = session.staging_memory();
  staging_base_ = staging.data();
  const auto start = std::chrono::steady_clock::now();
  // Portable: pinned for every device's context, as the copies of any device go through the pipes.
  staging_registered_ =
      driver_.mem_host_register(staging.data(), staging.size(), cuda::CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS;
  ipc::log(ipc::LogLevel::kDebug, "staging pipes ({} bytes) {} in {} us", staging.size(),
           staging_registered_ ? "pinned" : "not pinned",
           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
}

ipc::Result<void> DeviceSession::copy_staged(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  const auto copy = payload_as<wire::CopyRequest>(request);
  const bool to_device = static_cast<wire::RequestKind>(h.kind) == wire::RequestKind::kCopyHostToDevice;
  const std::uint64_t device_pointer = to_device ? copy.destination : copy.source;
  cuda::CUstream stream = nullptr;
  CUresult status = copy.bytes != h.staged_bytes ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
  if (status == CUDA_SUCCESS && !owns_range(device_pointer, copy.bytes)) status = CUDA_ERROR_INVALID_VALUE;
  if (status == CUDA_SUCCESS) status = stream_for(copy.stream, stream);
  if (status == CUDA_SUCCESS) pin_staging(session);
  // The events are the stream's device's: stream_for bound it.
  std::vector<cuda::CUevent>& staging_events = per_device_[bound_].staging_events;
  if (status == CUDA_SUCCESS && staging_events.empty()) {
    for (unsigned i = 0; i <= kStagingWindow && status == CUDA_SUCCESS; ++i) {
      cuda::CUevent event = nullptr;
      status = driver_.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING);
      if (status == CUDA_SUCCESS) staging_events.push_back(event);
    }
  }
  // Each chunk is one asynchronous transfer between the pipe and the device, marked by an event;
  // a chunk goes back to the pipe once its event has passed, with up to kStagingWindow in flight.
  // The staged bytes always flow, even for a request that fails, so that the pipe stays in step.
  auto event_of = [&](std::uint64_t index) { return staging_events[index % staging_events.size()]; };
  auto settle = [&](std::uint64_t index) {
    if (status == CUDA_SUCCESS) status = driver_.event_synchronize(event_of(index));
  };
  std::uint64_t done = 0;
  bool completed = false;
  ipc::Result<void> moved = boost::outcome_v2::success();
  if (to_device) {
    moved = session.receive_staged_windowed(h.staged_bytes, kStagingWindow,
        [&](std::span<const std::byte> piece, std::uint64_t index) {
          if (status == CUDA_SUCCESS) status = driver_.memcpy_htod_async(device_pointer + done, piece.data(), piece.size(), stream);
          if (status == CUDA_SUCCESS) status = driver_.event_record(event_of(index), stream);
          done += piece.size();
          // As CUDA's copy from pageable memory does, the call returns once the last bytes are
          // staged and queued, not transferred: the pipe keeps them until their event passes, and
          // a later failure surfaces at the next synchronizing call.
          if (done == h.staged_bytes && status == CUDA_SUCCESS) {
            session.complete(h, take_pending_error());
            completed = true;
          }
        },
        settle);
  } else {
    moved = session.send_staged_windowed(h.staged_bytes, kStagingWindow,
        [&](std::span<std::byte> piece, std::uint64_t index) {
          if (status == CUDA_SUCCESS) status = driver_.memcpy_dtoh_async(piece.data(), device_pointer + done, piece.size(), stream);
          if (status == CUDA_SUCCESS) status = driver_.event_record(event_of(index), stream);
          if (status != CUDA_SUCCESS) std::memset(piece.data(), 0, piece.size());
          done += piece.size();
        },
        settle);
  }
  if (!moved) {
    if (moved.error().code == ipc::IpcErrc::kProtocol) {
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kPipePosition)};
    }
    return moved.error();
  }
  counters_.staged_bytes.fetch_add(h.staged_bytes, std::memory_order_relaxed);
  (to_device ? traffic_.to_device : traffic_.from_device) += status == CUDA_SUCCESS ? h.staged_bytes : 0;
  last_call_failed_ = status != CUDA_SUCCESS;
  if (!completed) {
    session.complete(h, take_pending_error(status));
  } else if (status != CUDA_SUCCESS && pending_error_ == CUDA_SUCCESS) {
    pending_error_ = status;
  }
  return boost::outcome_v2::success();
}

cuda::CUresult DeviceSession::copy_arena(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const auto copy = payload_as<wire::CopyRequest>(request);
  const bool to_device = static_cast<wire::RequestKind>(request.header.kind) == wire::RequestKind::kCopyArenaToDevice;
  const std::uint64_t device_pointer = to_device ? copy.destination : copy.source;
  const std::uint64_t arena_offset = to_device ? copy.source : copy.destination;
  auto host = session.arena_range(arena_offset, copy.bytes);
  if (!host || !owns_range(device_pointer, copy.bytes)) return CUDA_ERROR_INVALID_VALUE;
  cuda::CUstream stream = nullptr;
  if (CUresult r = stream_for(copy.stream, stream); r != CUDA_SUCCESS) return r;
  // A direct transfer between the shared arena and the device: no CPU copy in any process.
  const CUresult r = to_device ? driver_.memcpy_htod_async(device_pointer, host.value().data(), copy.bytes, stream)
                               : driver_.memcpy_dtoh_async(host.value().data(), device_pointer, copy.bytes, stream);
  if (r == CUDA_SUCCESS) {
    counters_.zero_copy_bytes.fetch_add(copy.bytes, std::memory_order_relaxed);
    (to_device ? traffic_.to_device : traffic_.from_device) += copy.bytes;
  }
  return r;
}

cuda::CUresult DeviceSession::arena_register(ipc::ServerSession& session, const wire::ArenaRange& range) {
  auto host = session.arena_range(range.offset, range.bytes);
  if (!host || range.bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (arena_ranges_.count(range.offset) != 0) return cuda::CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  if (CUresult r = driver_.mem_host_register(host.value().data(), range.bytes, cuda::CU_MEMHOSTREGISTER_PORTABLE);
      r != CUDA_SUCCESS) {
    return r;
  }
  arena_ranges_[range.offset] = PinnedRange{host.value().data(), range.bytes};
  pinned_bytes_ += range.bytes;
  counters_.arena_registrations.fetch_add(1, std::memory_order_relaxed);
  return CUDA_SUCCESS;
}

ipc::Result<void> DeviceSession::finish_request(ipc::ServerSession& session, const wire::RequestHeader& request,
                                                CUresult status, std::span<const std::byte> result) {
  last_call_failed_ = status != CUDA_SUCCESS;
  note_sticky(session, status);
  if ((request.flags & wire::kSynchronous) != 0) {
    session.complete(request, take_pending_error(status), result);
  } else if (status != CUDA_SUCCESS && pending_error_ == CUDA_SUCCESS) {
    pending_error_ = status;  // an asynchronous failure surfaces at the next synchronizing call
  }
  return boost::outcome_v2::success();
}

ipc::Result<void> DeviceSession::handle(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  if (const CUresult named = select_device(h); named != CUDA_SUCCESS) {
    return refuse_request(session, request, named, cuda::CUBLAS_STATUS_INVALID_VALUE);
  }
  const bool synchronous = (h.flags & wire::kSynchronous) != 0;
  last_call_failed_ = false;
  auto finish = [&](CUresult status, std::span<const std::byte> result = {}) {
    return finish_request(session, h, status, result);
  };
  const auto kind = static_cast<wire::RequestKind>(h.kind);
  if (kind == wire::RequestKind::kSessionError) return report_session_error(session, h);
  if (const int sticky = sticky_error_.load(std::memory_order_relaxed); sticky != 0 && kind != wire::RequestKind::kBrokerTotals) {
    return refuse_poisoned(session, request, static_cast<CUresult>(sticky));
  }

  switch (kind) {
    case wire::RequestKind::kMemAlloc: {
      wire::PointerResult result{0};
      const CUresult r = memory_alloc(payload_as<wire::MemAllocRequest>(request), result.pointer);
      return finish(r, bytes_of(result));
    }
    case wire::RequestKind::kMemFree:
      return finish(memory_free(payload_as<wire::HandleRequest>(request).handle));
    case wire::RequestKind::kMemGetInfo: {
      const auto device = payload_as<wire::DeviceRequest>(request).device;
      if (device >= device_.devices().count) return finish(cuda::CUDA_ERROR_INVALID_DEVICE);
      bind(device);  // the device asked about, whichever is current
      std::size_t free = 0, total = 0;
      const CUresult r = driver_.mem_get_info(&free, &total);
      wire::MemInfoResult info{free, total};
      if (limits_.device_memory_bytes != 0 && limits_.device_memory_bytes < total) {
        // The session's view: its limit is its device (per device, as SessionLimits says).
        const std::uint64_t held = per_device_[device].allocated_bytes;
        info.total = limits_.device_memory_bytes;
        info.free = std::min<std::uint64_t>(free, info.total - std::min(info.total, held));
      }
      return finish(r, bytes_of(info));
    }
    case wire::RequestKind::kMemset: {
      const auto m = payload_as<wire::MemsetRequest>(request);
      if (!owns_range(m.pointer, m.bytes)) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUstream stream = nullptr;
      CUresult r = stream_for(m.stream, stream);
      if (r == CUDA_SUCCESS) r = driver_.memset_d8_async(m.pointer, static_cast<unsigned char>(m.value), m.bytes, stream);
      return finish(r);
    }
    case wire::RequestKind::kCopyHostToDevice:
    case wire::RequestKind::kCopyDeviceToHost:
      return copy_staged(session, request);
    case wire::RequestKind::kCopyDeviceToDevice: {
      const auto c = payload_as<wire::CopyRequest>(request);
      if (!owns_range(c.destination, c.bytes) || !owns_range(c.source, c.bytes)) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUstream stream = nullptr;
      CUresult r = stream_for(c.stream, stream);
      if (r == CUDA_SUCCESS) r = copy_between_devices(c, stream);
      return finish(r);
    }
    case wire::RequestKind::kCopyArenaToDevice:
    case wire::RequestKind::kCopyDeviceToArena: {
      const CUresult r = copy_arena(session, request);
      if (r != CUDA_SUCCESS || !synchronous) return finish(r);
      // A synchronous copy with pinned memory returns once the transfer is done.
      cuda::CUstream stream = nullptr;
      (void)stream_for(payload_as<wire::CopyRequest>(request).stream, stream);
      complete_after(session, h, stream);
      return boost::outcome_v2::success();
    }
    case wire::RequestKind::kArenaRegister:
      return finish(arena_register(session, payload_as<wire::ArenaRange>(request)));
    case wire::RequestKind::kArenaUnregister: {
      const auto range = payload_as<wire::ArenaRange>(request);
      auto it = arena_ranges_.find(range.offset);
      if (it == arena_ranges_.end()) return finish(cuda::CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
      const CUresult r = driver_.mem_host_unregister(it->second.host);
      pinned_bytes_ -= it->second.bytes;
      arena_ranges_.erase(it);
      counters_.arena_registrations.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    case wire::RequestKind::kStreamCreate: {
      const auto c = payload_as<wire::StreamCreateRequest>(request);
      if (is_default_stream(c.stream) || streams_.count(c.stream) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUstream stream = nullptr;
      // Every driver stream is non-blocking: the legacy default stream's contract is kept per
      // session (join_legacy), never through the context's own NULL stream, which every session shares.
      const CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, c.priority);
      if (r == CUDA_SUCCESS) {
        streams_[c.stream] = OnDevice<cuda::CUstream>{stream, current_};
        counters_.streams.fetch_add(1, std::memory_order_relaxed);
        if ((c.flags & cuda::CU_STREAM_NON_BLOCKING) == 0) {
          cuda::CUstream default_stream = nullptr;
          (void)stream_for(0, default_stream);  // exists before anything joins it
          per_device_[current_].blocking.streams.insert(c.stream);
          per_device_[current_].blocking.behind_default.insert(c.stream);
        }
      }
      return finish(r);
    }
    case wire::RequestKind::kStreamDestroy: {
      const auto id = payload_as<wire::HandleRequest>(request).handle;
      auto it = streams_.find(id);
      if (is_default_stream(id) || it == streams_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      // Like cuStreamDestroy: work already queued still runs; the handle is gone at once.
      bind(it->second.device);
      const CUresult r = driver_.stream_destroy(it->second.handle);
      forget_blocking(id);
      streams_.erase(it);
      counters_.streams.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    case wire::RequestKind::kStreamSynchronize: {
      cuda::CUstream stream = nullptr;
      if (CUresult r = stream_for(payload_as<wire::HandleRequest>(request).handle, stream); r != CUDA_SUCCESS) {
        return finish(r);
      }
      complete_after(session, h, stream);
      return boost::outcome_v2::success();
    }
    case wire::RequestKind::kStreamQuery: {
      cuda::CUstream stream = nullptr;
      CUresult r = stream_for(payload_as<wire::HandleRequest>(request).handle, stream);
      if (r == CUDA_SUCCESS) r = driver_.stream_query(stream);
      return finish(r);
    }
    case wire::RequestKind::kStreamWaitEvent: {
      const auto w = payload_as<wire::EventStreamRequest>(request);
      cuda::CUstream stream = nullptr;
      cuda::CUevent event = nullptr;
      CUresult r = stream_for(w.stream, stream);
      if (r == CUDA_SUCCESS) r = event_for(w.event, event);
      if (r == CUDA_SUCCESS) r = driver_.stream_wait_event(stream, event, 0);
      return finish(r);
    }
    case wire::RequestKind::kEventCreate: {
      const auto c = payload_as<wire::EventCreateRequest>(request);
      if (events_.count(c.event) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUevent event = nullptr;
      const CUresult r = driver_.event_create(&event, c.flags);
      if (r == CUDA_SUCCESS) {
        events_[c.event] = OnDevice<cuda::CUevent>{event, current_};
        counters_.events.fetch_add(1, std::memory_order_relaxed);
      }
      return finish(r);
    }
    case wire::RequestKind::kEventDestroy: {
      auto it = events_.find(payload_as<wire::HandleRequest>(request).handle);
      if (it == events_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(it->second.device);
      const CUresult r = driver_.event_destroy(it->second.handle);
      events_.erase(it);
      counters_.events.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    case wire::RequestKind::kEventRecord: {
      const auto e = payload_as<wire::EventStreamRequest>(request);
      cuda::CUstream stream = nullptr;
      cuda::CUevent event = nullptr;
      CUresult r = event_for(e.event, event);
      if (r == CUDA_SUCCESS) r = stream_for(e.stream, stream);
      // As cudaEventRecord: the event and the stream must be of one device.
      if (r == CUDA_SUCCESS && events_.at(e.event).device != bound_) r = CUDA_ERROR_INVALID_HANDLE;
      if (r == CUDA_SUCCESS) r = driver_.event_record(event, stream);
      return finish(r);
    }
    case wire::RequestKind::kEventSynchronize: {
      cuda::CUevent event = nullptr;
      if (CUresult r = event_for(payload_as<wire::HandleRequest>(request).handle, event); r != CUDA_SUCCESS) {
        return finish(r);
      }
      // On the event's own device, whichever is current.
      const std::uint32_t event_device = events_.at(payload_as<wire::HandleRequest>(request).handle).device;
      bind(event_device);
      cuda::CUstream& sync_stream = per_device_[event_device].sync_stream;
      if (sync_stream == nullptr) {
        if (CUresult r = driver_.stream_create_with_priority(&sync_stream, cuda::CU_STREAM_NON_BLOCKING, 0);
            r != CUDA_SUCCESS) {
          return finish(r);
        }
      }
      // The wait happens on a private stream, and its end is a callback: nothing blocks here.
      if (CUresult r = driver_.stream_wait_event(sync_stream, event, 0); r != CUDA_SUCCESS) return finish(r);
      complete_after(session, h, sync_stream);
      return boost::outcome_v2::success();
    }
    case wire::RequestKind::kEventQuery: {
      cuda::CUevent event = nullptr;
      CUresult r = event_for(payload_as<wire::HandleRequest>(request).handle, event);
      if (r == CUDA_SUCCESS) r = driver_.event_query(event);
      return finish(r);
    }
    case wire::RequestKind::kEventElapsedTime: {
      const auto p = payload_as<wire::EventPairRequest>(request);
      cuda::CUevent start = nullptr, end = nullptr;
      float milliseconds = 0;
      CUresult r = event_for(p.start, start);
      if (r == CUDA_SUCCESS) r = event_for(p.end, end);
      // As cudaEventElapsedTime: two events of one device.
      if (r == CUDA_SUCCESS && events_.at(p.start).device != events_.at(p.end).device) r = CUDA_ERROR_INVALID_HANDLE;
      if (r == CUDA_SUCCESS) r = driver_.event_elapsed_time(&milliseconds, start, end);
      return finish(r, bytes_of(milliseconds));
    }
    case wire::RequestKind::kContextSynchronize:
      complete_after_all_streams(session, h);
      return boost::outcome_v2::success();
    case wire::RequestKind::kBrokerTotals: {
      const wire::BrokerTotals totals{counters_.sessions.load(),        counters_.device_bytes.load(),
                                      counters_.allocations.load(),     counters_.streams.load(),
                                      counters_.events.load(),          counters_.arena_registrations.load(),
                                      counters_.graphs.load(),          counters_.staged_bytes.load(),
                                      counters_.zero_copy_bytes.load(), counters_.modules.load(),
                                      counters_.blas_handles.load()};
      return finish(CUDA_SUCCESS, bytes_of(totals));
    }
    case wire::RequestKind::kBlasCreate:
    case wire::RequestKind::kBlasDestroy:
    case wire::RequestKind::kBlasSetStream:
    case wire::RequestKind::kBlasSetMathMode:
    case wire::RequestKind::kBlasSetWorkspace:
    case wire::RequestKind::kBlasGemm:
    case wire::RequestKind::kBlasTrsmBatched:
      return handle_blas(session, request);
    case wire::RequestKind::kBlasLtMatmul:
      return finish(static_cast<CUresult>(blas_lt_matmul(payload_as<wire::BlasLtMatmulRequest>(request))));
    case wire::RequestKind::kVmmGranularity:
    case wire::RequestKind::kVmmAddressReserve:
    case wire::RequestKind::kVmmAddressFree:
    case wire::RequestKind::kVmmCreate:
    case wire::RequestKind::kVmmRelease:
    case wire::RequestKind::kVmmMap:
    case wire::RequestKind::kVmmUnmap:
    case wire::RequestKind::kVmmSetAccess:
      return handle_vmm(session, request);
    case wire::RequestKind::kModuleLoad:
    case wire::RequestKind::kModuleGetFunction:
    case wire::RequestKind::kLaunchKernel:
    case wire::RequestKind::kLaunchKernelStaged:
    case wire::RequestKind::kModuleUnload:
    case wire::RequestKind::kModuleGetGlobal:
    case wire::RequestKind::kFuncGetAttributes:
    case wire::RequestKind::kFuncSetAttribute:
    case wire::RequestKind::kFuncSetCacheConfig:
    case wire::RequestKind::kOccupancy:
      return handle_module(session, request);
    case wire::RequestKind::kStreamBeginCapture:
    case wire::RequestKind::kStreamEndCapture:
    case wire::RequestKind::kStreamIsCapturing:
    case wire::RequestKind::kGraphInstantiate:
    case wire::RequestKind::kGraphLaunch:
    case wire::RequestKind::kGraphExecUpdate:
    case wire::RequestKind::kGraphDestroy:
    case wire::RequestKind::kGraphExecDestroy:
      return handle_graph(session, request);
    case wire::RequestKind::kHostFuncEnqueue:
    case wire::RequestKind::kHostFuncWait:
      return handle_host_func(session, request);
    case wire::RequestKind::kDeviceLimit: {
      // Raise-only, and one session at a time, so that a raise is never undone by another's.
      static std::mutex limits_lock;
      const auto l = payload_as<wire::LimitRequest>(request);
      if (l.raise > 1) return finish(CUDA_ERROR_INVALID_VALUE);
      // The runtime's limits; the driver's newer ones (shared memory, CIG) are not the runtime's.
      if (l.limit < 0 || l.limit >= cuda::CU_LIMIT_MAX) return finish(cuda::CUDA_ERROR_UNSUPPORTED_LIMIT);
      std::lock_guard lock(limits_lock);
      std::size_t value = 0;
      CUresult r = driver_.ctx_get_limit(&value, l.limit);
      // The L2 limits shape how every session's kernels use the cache: not the session's to change.
      const bool shared_cache_limit = l.limit == 5 || l.limit == 6;
      if (r == CUDA_SUCCESS && l.raise == 1 && shared_cache_limit && l.value != value) {
        r = cuda::CUDA_ERROR_NOT_SUPPORTED;
      } else if (r == CUDA_SUCCESS && l.raise == 1 && l.value > value) {
        r = driver_.ctx_set_limit(l.limit, l.value);
        if (r == CUDA_SUCCESS) r = driver_.ctx_get_limit(&value, l.limit);
      }
      return finish(r, bytes_of(static_cast<std::uint64_t>(value)));
    }
    default:
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
  }
}

namespace {

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

// Bytes a column-major rows x cols matrix with leading dimension `ld` spans; UINT64_MAX (which no
// session owns) when that does not fit in 64 bits.
std::uint64_t matrix_bytes(std::int64_t ld, std::int64_t rows, std::int64_t cols, std::uint64_t element) {
  if (rows <= 0 || cols <= 0) return 0;
  std::uint64_t elements = 0, bytes = 0;
  if (ld < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(ld), static_cast<std::uint64_t>(cols - 1), &elements) ||
      __builtin_add_overflow(elements, static_cast<std::uint64_t>(rows), &elements) ||
      __builtin_mul_overflow(elements, element, &bytes)) {
    return UINT64_MAX;
  }
  return bytes;
}

// Bytes from the first of `batch` matrices `stride` elements apart to the end of the last, each
// spanning `one` bytes; UINT64_MAX when a negative stride or the arithmetic would wrap (a wrapped
// extent could pass the check while the members between first and last lie elsewhere).
std::uint64_t batch_bytes(std::int64_t stride, std::uint64_t one, std::uint64_t element, std::int64_t batch) {
  if (one == 0 || batch == 1) return one;  // one matrix: the stride is never used
  std::uint64_t step = 0, last = 0, total = 0;
  if (stride < 0 || batch < 1 || __builtin_mul_overflow(static_cast<std::uint64_t>(stride), element, &step) ||
      __builtin_mul_overflow(step, static_cast<std::uint64_t>(batch - 1), &last) ||
      __builtin_add_overflow(last, one, &total)) {
    return UINT64_MAX;
  }
  return total;
}

}  // namespace

// Checks every matrix the GEMM touches against this session's allocations before cuBLAS sees
// it: a session never makes cuBLAS read or write memory that is not its own.
int DeviceSession::gemm(const wire::BlasGemmRequest& r, cuda::cublasHandle_t handle) {
  const cuda::CublasTable& blas = *device_.blas();
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
      if ((a_bytes && !owns_range(r.a, a_bytes)) || (b_bytes && !owns_range(r.b, b_bytes)) || !owns_range(r.c, c_bytes)) {
        return cuda::CUBLAS_STATUS_INVALID_VALUE;
      }
      return blas.gemm_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha, reinterpret_cast<const void*>(r.a), at, r.lda,
                          reinterpret_cast<const void*>(r.b), bt, r.ldb, r.beta, reinterpret_cast<void*>(r.c), ct,
                          r.ldc, compute, algo);
    case wire::GemmVariant::kStridedBatched:
      if (r.stride_a < 0 || r.stride_b < 0 || r.stride_c < 0 ||
          (a_bytes && !owns_range(r.a, extent(r.stride_a, a_bytes, ea))) ||
          (b_bytes && !owns_range(r.b, extent(r.stride_b, b_bytes, eb))) ||
          !owns_range(r.c, extent(r.stride_c, c_bytes, ec))) {
        return cuda::CUBLAS_STATUS_INVALID_VALUE;
      }
      return blas.gemm_strided_batched_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha, reinterpret_cast<const void*>(r.a),
                                          at, r.lda, r.stride_a, reinterpret_cast<const void*>(r.b), bt, r.ldb,
                                          r.stride_b, r.beta, reinterpret_cast<void*>(r.c), ct, r.ldc, r.stride_c,
                                          r.batch_count, compute, algo);
    case wire::GemmVariant::kPointerArrays: {
      // The arrays live in device memory and may have just been written by the stream's work:
      // wait for it, read them, and check every matrix they point to.
      const auto arrays = static_cast<std::uint64_t>(r.batch_count) * sizeof(std::uint64_t);
      if (!owns_range(r.a, arrays) || !owns_range(r.b, arrays) || !owns_range(r.c, arrays)) {
        return cuda::CUBLAS_STATUS_INVALID_VALUE;
      }
      cuda::cudaStream_t stream = nullptr;
      blas.get_stream(handle, &stream);
      std::vector<std::uint64_t> pointers(3 * static_cast<std::size_t>(r.batch_count));
      const std::uint64_t sources[3] = {r.a, r.b, r.c};
      for (int array = 0; array < 3; ++array) {
        if (driver_.memcpy_dtoh_async(pointers.data() + array * r.batch_count, sources[array], arrays, stream) !=
            CUDA_SUCCESS) {
          return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
        }
      }
      if (driver_.stream_synchronize(stream) != CUDA_SUCCESS) return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
      for (int i = 0; i < r.batch_count; ++i) {
        if ((a_bytes && !owns_range(pointers[i], a_bytes)) || (b_bytes && !owns_range(pointers[r.batch_count + i], b_bytes)) ||
            !owns_range(pointers[2 * r.batch_count + i], c_bytes)) {
          return cuda::CUBLAS_STATUS_INVALID_VALUE;
        }
      }
      return blas.gemm_batched_ex(handle, opa, opb, r.m, r.n, r.k, r.alpha,
                                  reinterpret_cast<const void* const*>(r.a), at, r.lda,
                                  reinterpret_cast<const void* const*>(r.b), bt, r.ldb, r.beta,
                                  reinterpret_cast<void* const*>(r.c), ct, r.ldc, r.batch_count, compute, algo);
    }
  }
  return cuda::CUBLAS_STATUS_INVALID_VALUE;
}

ipc::Result<void> DeviceSession::handle_blas(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  auto finish = [&](int status) { return finish_request(session, h, status); };
  const cuda::CublasTable* blas = device_.blas();
  if (blas == nullptr) return finish(cuda::CUBLAS_STATUS_NOT_INITIALIZED);
  const std::uint64_t id = payload_as<wire::HandleRequest>(request).handle;  // every kind starts with it
  if (static_cast<wire::RequestKind>(h.kind) == wire::RequestKind::kBlasCreate) {
    if (blas_handles_.count(id) != 0) return finish(cuda::CUBLAS_STATUS_INVALID_VALUE);
    cuda::cublasHandle_t handle = nullptr;
    const int status = blas->create(&handle);  // on the current device, as cublasCreate
    if (status == cuda::CUBLAS_STATUS_SUCCESS) {
      blas_handles_[id] = OnDevice<cuda::cublasHandle_t>{handle, current_};
      counters_.blas_handles.fetch_add(1, std::memory_order_relaxed);
      // Scalars arrive by value in the request: the handle reads them from host memory.
      blas->set_pointer_mode(handle, cuda::CUBLAS_POINTER_MODE_HOST);
      cuda::CUstream stream = nullptr;
      if (stream_for(0, stream) == CUDA_SUCCESS) blas->set_stream(handle, stream);
    }
    return finish(status);
  }
  auto it = blas_handles_.find(id);
  if (it == blas_handles_.end()) return finish(cuda::CUBLAS_STATUS_NOT_INITIALIZED);
  cuda::cublasHandle_t handle = it->second.handle;
  bind(it->second.device);  // a handle works on the device it was made on, whichever is current
  switch (static_cast<wire::RequestKind>(h.kind)) {
    case wire::RequestKind::kBlasDestroy: {
      const int status = blas->destroy(handle);
      blas_handles_.erase(it);
      counters_.blas_handles.fetch_sub(1, std::memory_order_relaxed);
      return finish(status);
    }
    case wire::RequestKind::kBlasSetStream: {
      cuda::CUstream stream = nullptr;
      if (stream_for(payload_as<wire::BlasSettingRequest>(request).value, stream) != CUDA_SUCCESS ||
          bound_ != it->second.device) {  // a stream of another device than the handle's
        return finish(cuda::CUBLAS_STATUS_INVALID_VALUE);
      }
      return finish(blas->set_stream(handle, stream));
    }
    case wire::RequestKind::kBlasSetMathMode:
      return finish(blas->set_math_mode(handle, static_cast<cuda::cublasMath_t>(payload_as<wire::BlasSettingRequest>(request).value)));
    case wire::RequestKind::kBlasSetWorkspace: {
      const auto w = payload_as<wire::BlasWorkspaceRequest>(request);
      if (w.bytes != 0 && !owns_range(w.pointer, w.bytes)) return finish(cuda::CUBLAS_STATUS_INVALID_VALUE);
      return finish(blas->set_workspace(handle, reinterpret_cast<void*>(w.pointer), w.bytes));
    }
    case wire::RequestKind::kBlasGemm:
      return finish(gemm(payload_as<wire::BlasGemmRequest>(request), handle));
    case wire::RequestKind::kBlasTrsmBatched:
      return finish(trsm_batched(payload_as<wire::BlasTrsmRequest>(request), handle));
    default:
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
  }
}

// cublasLtMatmul from the shim's one-slot description: every matrix (and the bias) checked against
// the session's memory, then the broker's own descriptors and the session's cuBLASLt handle (made
// on first use) on the request's stream. The descriptors are host objects, made and destroyed per
// call.
int DeviceSession::blas_lt_matmul(const wire::BlasLtMatmulRequest& r) {
  const cuda::lt::CublasLtTable* lt = device_.blas_lt();
  if (lt == nullptr) return cuda::CUBLAS_STATUS_NOT_SUPPORTED;
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
  // C may be null only where beta (any nonzero byte) cannot make cuBLASLt read it.
  const bool beta_zero = std::ranges::all_of(r.beta, [](std::uint8_t byte) { return byte == 0; });
  if (!owns_range(r.a, extents[0]) || !owns_range(r.b, extents[1]) || !owns_range(r.d, extents[3]) ||
      (r.c != 0 ? !owns_range(r.c, extents[2]) : !beta_zero)) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool bias = (r.epilogue & lt_abi::CUBLASLT_EPILOGUE_BIAS) != 0;
  const std::int32_t bias_type = r.bias_type < 0 ? static_cast<std::int32_t>(d.type) : r.bias_type;
  if (bias) {
    const std::uint64_t element = element_bytes(bias_type);
    if (element == 0 || !owns_range(r.bias, batch_bytes(r.bias_stride, d.rows * element, element, d.batch))) {
      return cuda::CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  cuda::CUstream stream = nullptr;
  if (stream_for(r.stream, stream) != CUDA_SUCCESS) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  cuda::lt::cublasLtHandle_t& blas_lt = per_device_[bound_].blas_lt;  // the stream's device's
  if (blas_lt == nullptr) {
    if (const int s = lt->create(&blas_lt); s != cuda::CUBLAS_STATUS_SUCCESS) return s;
  }

  // The broker's descriptors, released whatever happens.
  struct Descriptors {
    const lt_abi::CublasLtTable& lt;
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
  return lt->matmul(blas_lt, own.op, r.alpha, reinterpret_cast<const void*>(r.a), own.layouts[0],
                    reinterpret_cast<const void*>(r.b), own.layouts[1], r.beta, reinterpret_cast<const void*>(r.c),
                    own.layouts[2], reinterpret_cast<void*>(r.d), own.layouts[3], nullptr, nullptr, 0, stream);
}

// Clients pack parameters by the layout the project's fatbin parser reads; where the driver can
// tell (cuFuncGetParamInfo, CUDA 12.4+), the two must agree, or every launch of the kernel would
// hand it misplaced bytes. A disagreement refuses the function and says why.
cuda::CUresult DeviceSession::check_layout(const ipc::ServerSession& session, const ModuleCache::Module& module,
                                           const char* name, cuda::CUfunction function) const {
  if (driver_.func_get_param_info == nullptr) return CUDA_SUCCESS;
  const auto kernel = std::ranges::find(module.kernels, std::string_view(name), &fatbin::KernelInfo::name);
  if (kernel == module.kernels.end()) return CUDA_SUCCESS;  // the driver found it; the parser did not look
  std::size_t index = 0;
  for (;; ++index) {
    std::size_t offset = 0, size = 0;
    if (driver_.func_get_param_info(function, index, &offset, &size) != CUDA_SUCCESS) break;
    if (index >= kernel->params.size() || kernel->params[index].offset != offset || kernel->params[index].size != size) {
      ipc::log(ipc::LogLevel::kError, "session {}: kernel {}: parameter {} is at {} ({} bytes) for the driver, not "
               "where the fatbin parser put it", session.id(), name, index, offset, size);
      return cuda::CUDA_ERROR_INVALID_IMAGE;
    }
  }
  if (index != kernel->params.size()) {
    ipc::log(ipc::LogLevel::kError, "session {}: kernel {}: the driver knows {} parameters, the fatbin parser {}",
             session.id(), name, index, kernel->params.size());
    return cuda::CUDA_ERROR_INVALID_IMAGE;
  }
  return CUDA_SUCCESS;
}

// A launch with attributes (wire::LaunchFlags) goes through cuLaunchKernelEx. A driver without
// it can still serve programmatic serialization, which only permits an overlap, as a plain launch.
cuda::CUresult DeviceSession::launch_with_attributes(const wire::LaunchRequest& launch, cuda::CUfunction function,
                                                     cuda::CUstream stream, void** extra) {
  if ((launch.flags & ~(wire::kLaunchCooperative | wire::kLaunchProgrammaticSerialization)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (driver_.launch_kernel_ex == nullptr) {
    if ((launch.flags & wire::kLaunchCooperative) != 0) return cuda::CUDA_ERROR_NOT_SUPPORTED;
    return driver_.launch_kernel(function, launch.grid[0], launch.grid[1], launch.grid[2], launch.block[0],
                                 launch.block[1], launch.block[2], launch.shared_bytes, stream, nullptr, extra);
  }
  cuda::CUlaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if ((launch.flags & wire::kLaunchCooperative) != 0) {
    attributes[count].id = cuda::CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    attributes[count++].value.cooperative = 1;
  }
  if ((launch.flags & wire::kLaunchProgrammaticSerialization) != 0) {
    attributes[count].id = cuda::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attributes[count++].value.programmaticStreamSerializationAllowed = 1;
  }
  const cuda::CUlaunchConfig config{launch.grid[0], launch.grid[1], launch.grid[2], launch.block[0], launch.block[1],
                                    launch.block[2], launch.shared_bytes, stream, attributes, count};
  return driver_.launch_kernel_ex(&config, function, nullptr, extra);
}

ipc::Result<void> DeviceSession::handle_module(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  auto finish = [&](CUresult status, std::span<const std::byte> result = {}) {
    return finish_request(session, h, status, result);
  };
  // Staged bytes are taken whole (an image, a name, a parameter block), then checked.
  auto receive_all = [&](std::vector<std::byte>& bytes) -> ipc::Result<void> {
    if (h.staged_bytes > kMaxStagedObjectBytes) {
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kRequest)};
    }
    bytes.resize(h.staged_bytes);
    std::size_t at = 0;
    auto received = session.receive_staged(h.staged_bytes, [&](std::span<const std::byte> piece) {
      std::memcpy(bytes.data() + at, piece.data(), piece.size());
      at += piece.size();
    });
    if (!received && received.error().code == ipc::IpcErrc::kProtocol) {
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kPipePosition)};
    }
    return received;
  };
  switch (static_cast<wire::RequestKind>(h.kind)) {
    case wire::RequestKind::kModuleLoad: {
      const std::uint64_t id = payload_as<wire::HandleRequest>(request).handle;
      std::vector<std::byte> image;
      if (auto received = receive_all(image); !received) return received.error();
      if (modules_.count(id) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      // The driver reads an image without being told its length. So the broker's own parser
      // first proves that the image is whole and well-formed within the bytes received (a
      // malformed one never reaches the driver), and PTX text gets its terminator.
      const wire::DeviceRecord& d = device_.devices().devices[current_];  // loaded on the current device
      const auto arch = static_cast<std::uint32_t>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] * 10 +
                                                   d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR]);
      auto parsed = fatbin::parse_module(image, arch);
      if (!parsed) {
        ipc::log(ipc::LogLevel::kWarning, "session {}: module image refused: {}", session.id(),
                 fatbin::describe(parsed.error()));
        return finish(parsed.error().code == fatbin::FatbinErrc::kNoCompatibleImage ? cuda::CUDA_ERROR_NO_BINARY_FOR_GPU
                                                                                     : cuda::CUDA_ERROR_INVALID_IMAGE);
      }
      image.push_back(std::byte{0});
      std::shared_ptr<const ModuleCache::Module> module;
      const CUresult r = device_.modules().load(current_, device_.context(current_), image,
                                                !parsed.value().has_writable_globals, std::move(parsed.value().kernels),
                                                module);
      if (r == CUDA_SUCCESS) {
        modules_[id] = module;
        counters_.modules.fetch_add(1, std::memory_order_relaxed);
      }
      return finish(r);
    }
    case wire::RequestKind::kModuleGetFunction: {
      const auto f = payload_as<wire::FunctionRequest>(request);
      std::vector<std::byte> name;
      if (auto received = receive_all(name); !received) return received.error();
      name.push_back(std::byte{0});
      auto module = modules_.find(f.module);
      if (module == modules_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      if (functions_.count(f.function) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      bind(module->second->device);
      cuda::CUfunction function = nullptr;
      CUresult r = driver_.module_get_function(&function, module->second->handle, reinterpret_cast<const char*>(name.data()));
      if (r == CUDA_SUCCESS) r = check_layout(session, *module->second, reinterpret_cast<const char*>(name.data()), function);
      if (r == CUDA_SUCCESS) {
        // The name is kept for the report of a failed launch, which carries no more than this.
        const std::string_view full(reinterpret_cast<const char*>(name.data()));
        functions_[f.function] = Function{function, f.module,
                                          std::string(full.substr(0, sizeof(wire::SessionErrorReport::kernel) - 1))};
      }
      return finish(r);
    }
    case wire::RequestKind::kModuleGetGlobal: {
      const std::uint64_t module_id = payload_as<wire::HandleRequest>(request).handle;
      std::vector<std::byte> name;
      if (auto received = receive_all(name); !received) return received.error();
      name.push_back(std::byte{0});
      auto module = modules_.find(module_id);
      if (module == modules_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(module->second->device);
      cuda::CUdeviceptr pointer = 0;
      std::size_t bytes = 0;
      const CUresult r = driver_.module_get_global(&pointer, &bytes, module->second->handle, reinterpret_cast<const char*>(name.data()));
      if (r != CUDA_SUCCESS) return finish(r);
      globals_[pointer] = Global{bytes, module_id};
      return finish(r, bytes_of(wire::GlobalResult{pointer, bytes}));
    }
    case wire::RequestKind::kFuncGetAttributes:
    case wire::RequestKind::kFuncSetAttribute:
    case wire::RequestKind::kFuncSetCacheConfig: {
      const auto a = payload_as<wire::FuncAttributeRequest>(request);
      auto function = functions_.find(a.function);
      if (function == functions_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(modules_.at(function->second.module)->device);
      const cuda::CUfunction f = function->second.handle;
      switch (static_cast<wire::RequestKind>(h.kind)) {
        case wire::RequestKind::kFuncSetAttribute: {
          // A shared module's functions are every holder's: the dynamic shared memory limit, which
          // decides whether their launches are valid, is only ever raised for them.
          constexpr auto kMaxDynamicShared = cuda::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
          const auto attribute = static_cast<cuda::CUfunction_attribute>(a.attribute);
          int current = 0;
          if (attribute == kMaxDynamicShared && modules_.at(function->second.module)->shared &&
              driver_.func_get_attribute(&current, attribute, f) == CUDA_SUCCESS && a.value <= current) {
            return finish(CUDA_SUCCESS);
          }
          return finish(driver_.func_set_attribute(f, attribute, a.value));
        }
        case wire::RequestKind::kFuncSetCacheConfig:
          return finish(driver_.func_set_cache_config(f, static_cast<cuda::CUfunc_cache>(a.value)));
        default: {
          // Attributes a driver does not know (newer than it) read as 0, as the runtime reports them.
          wire::FuncAttributesResult result{};
          for (int i = 0; i < static_cast<int>(std::size(result.values)); ++i) {
            if (driver_.func_get_attribute(&result.values[i], static_cast<cuda::CUfunction_attribute>(i), f) != CUDA_SUCCESS) {
              result.values[i] = 0;
            }
          }
          return finish(CUDA_SUCCESS, bytes_of(result));
        }
      }
    }
    case wire::RequestKind::kOccupancy: {
      const auto o = payload_as<wire::OccupancyRequest>(request);
      auto function = functions_.find(o.function);
      if (function == functions_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(modules_.at(function->second.module)->device);
      int blocks = 0;
      const CUresult r = driver_.occupancy_max_active_blocks(&blocks, function->second.handle, o.block_size,
                                                            o.dynamic_shared_bytes, o.flags);
      return finish(r, bytes_of(static_cast<std::int32_t>(blocks)));
    }
    case wire::RequestKind::kLaunchKernel:
    case wire::RequestKind::kLaunchKernelStaged: {
      const auto launch = payload_as<wire::LaunchRequest>(request);
      std::vector<std::byte> staged;
      std::span<const std::byte> params;
      if (static_cast<wire::RequestKind>(h.kind) == wire::RequestKind::kLaunchKernelStaged) {
        if (auto received = receive_all(staged); !received) return received.error();
        params = staged;
      } else {
        params = std::span<const std::byte>(request.payload + sizeof(wire::LaunchRequest),
                                            h.payload_bytes - sizeof(wire::LaunchRequest));
      }
      if (launch.param_bytes != params.size()) return finish(CUDA_ERROR_INVALID_VALUE);
      auto function = functions_.find(launch.function);
      if (function == functions_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      cuda::CUstream stream = nullptr;
      if (CUresult r = stream_for(launch.stream, stream); r != CUDA_SUCCESS) return finish(r);
      if (CUresult r = check_launch_device(function->second.module); r != CUDA_SUCCESS) return finish(r);
      std::size_t size = params.size();
      void* buffer = const_cast<std::byte*>(params.data());
      void* extra[] = {cuda::CU_LAUNCH_PARAM_BUFFER_POINTER, buffer, cuda::CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                       cuda::CU_LAUNCH_PARAM_END};
      const CUresult r =
          launch.flags == 0
              ? driver_.launch_kernel(function->second.handle, launch.grid[0], launch.grid[1], launch.grid[2],
                                      launch.block[0], launch.block[1], launch.block[2], launch.shared_bytes, stream,
                                      nullptr, extra)
              : launch_with_attributes(launch, function->second.handle, stream, extra);
      note_sticky(session, r, &function->second);
      return finish(r);
    }
    case wire::RequestKind::kModuleUnload: {
      auto it = modules_.find(payload_as<wire::HandleRequest>(request).handle);
      if (it == modules_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      const CUresult r = CUDA_SUCCESS;  // the driver unloads it when its last session lets go
      std::erase_if(functions_, [&](const auto& entry) { return entry.second.module == it->first; });
      std::erase_if(globals_, [&](const auto& entry) { return entry.second.module == it->first; });
      modules_.erase(it);
      counters_.modules.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    default:
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
  }
}

namespace {

struct HostFuncNotice {
  void* session;  // the DeviceSession
  std::uint64_t id;
};

}  // namespace

ipc::Result<void> DeviceSession::handle_host_func(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  HostFuncs& hf = host_funcs_;
  if (static_cast<wire::RequestKind>(h.kind) == wire::RequestKind::kHostFuncEnqueue) {
    const auto r = payload_as<wire::HostFuncRequest>(request);
    cuda::CUstream stream = nullptr;
    if (CUresult e = stream_for(r.stream, stream); e != CUDA_SUCCESS) return finish_request(session, h, e);
    cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
    if (driver_.stream_is_capturing(stream, &capturing) != CUDA_SUCCESS || capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
      return finish_request(session, h, cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    {
      std::lock_guard lock(hf.lock);
      hf.session = &session;
    }
    auto* notice = new HostFuncNotice{this, r.id};
    callbacks_in_flight_.fetch_add(1, std::memory_order_relaxed);
    const CUresult e = driver_.launch_host_func(stream, host_func_ready, notice);
    if (e != CUDA_SUCCESS) {
      delete notice;
      callbacks_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    }
    return finish_request(session, h, e);
  }
  // kHostFuncWait: the next function whose turn has come, now or when its notice runs.
  std::lock_guard lock(hf.lock);
  if (hf.waiter.has_value()) return finish_request(session, h, CUDA_ERROR_INVALID_VALUE);  // one waiter per session
  if (!hf.ready.empty()) {
    const std::uint64_t id = hf.ready.front();
    hf.ready.pop_front();
    return finish_request(session, h, CUDA_SUCCESS, bytes_of(id));
  }
  hf.waiter = h;
  hf.session = &session;
  return boost::outcome_v2::success();
}

void DeviceSession::host_func_ready(void* context) {
  auto* notice = static_cast<HostFuncNotice*>(context);
  auto* self = static_cast<DeviceSession*>(notice->session);
  const std::uint64_t id = notice->id;
  delete notice;
  {
    HostFuncs& hf = self->host_funcs_;
    std::lock_guard lock(hf.lock);
    if (hf.closed) {
      // The session is going: nobody will run it.
    } else if (hf.waiter.has_value()) {
      hf.session->complete(*hf.waiter, CUDA_SUCCESS, bytes_of(id));
      hf.waiter.reset();
    } else {
      hf.ready.push_back(id);
    }
  }
  // Pairs with the acquire load in reclaim(): after this the session may go.
  self->callbacks_in_flight_.fetch_sub(1, std::memory_order_release);
}

ipc::Result<void> DeviceSession::handle_graph(ipc::ServerSession& session, const wire::RequestSlot& request) {
  const wire::RequestHeader& h = request.header;
  auto finish = [&](CUresult status, std::span<const std::byte> result = {}) {
    return finish_request(session, h, status, result);
  };
  // Each binds the object's device: a graph is of the device of the stream it was captured on.
  auto graph_for = [&](std::uint64_t id, cuda::CUgraph& graph) {
    auto it = graphs_.find(id);
    if (it == graphs_.end()) return CUDA_ERROR_INVALID_HANDLE;
    graph = it->second.handle;
    bind(it->second.device);
    return CUDA_SUCCESS;
  };
  auto exec_for = [&](std::uint64_t id, cuda::CUgraphExec& exec) {
    auto it = graph_execs_.find(id);
    if (it == graph_execs_.end()) return CUDA_ERROR_INVALID_HANDLE;
    exec = it->second.handle;
    bind(it->second.device);
    return CUDA_SUCCESS;
  };
  cuda::CUstream stream = nullptr;
  switch (static_cast<wire::RequestKind>(h.kind)) {
    case wire::RequestKind::kStreamBeginCapture: {
      const auto c = payload_as<wire::CaptureRequest>(request);
      CUresult r = stream_for(c.stream, stream);
      if (r == CUDA_SUCCESS) r = driver_.stream_begin_capture(stream, static_cast<cuda::CUstreamCaptureMode>(c.graph_or_mode));
      return finish(r);
    }
    case wire::RequestKind::kStreamEndCapture: {
      const auto c = payload_as<wire::CaptureRequest>(request);
      if (graphs_.count(c.graph_or_mode) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUgraph graph = nullptr;
      CUresult r = stream_for(c.stream, stream);
      if (r == CUDA_SUCCESS) r = driver_.stream_end_capture(stream, &graph);
      if (r == CUDA_SUCCESS && graph != nullptr) {
        graphs_[c.graph_or_mode] = OnDevice<cuda::CUgraph>{graph, bound_};
        counters_.graphs.fetch_add(1, std::memory_order_relaxed);
      }
      return finish(r);
    }
    case wire::RequestKind::kStreamIsCapturing: {
      cuda::CUstreamCaptureStatus status = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
      CUresult r = stream_for(payload_as<wire::HandleRequest>(request).handle, stream);
      if (r == CUDA_SUCCESS) r = driver_.stream_is_capturing(stream, &status);
      const std::int32_t value = status;
      return finish(r, bytes_of(value));
    }
    case wire::RequestKind::kGraphInstantiate: {
      const auto g = payload_as<wire::GraphRequest>(request);
      cuda::CUgraph graph = nullptr;
      cuda::CUgraphExec exec = nullptr;
      if (graph_execs_.count(g.second) != 0) return finish(CUDA_ERROR_INVALID_VALUE);
      CUresult r = graph_for(g.first, graph);
      if (r == CUDA_SUCCESS) r = driver_.graph_instantiate(&exec, graph, 0);
      if (r == CUDA_SUCCESS) {
        graph_execs_[g.second] = OnDevice<cuda::CUgraphExec>{exec, bound_};
        counters_.graphs.fetch_add(1, std::memory_order_relaxed);
      }
      return finish(r);
    }
    case wire::RequestKind::kGraphLaunch: {
      const auto g = payload_as<wire::GraphRequest>(request);
      cuda::CUgraphExec exec = nullptr;
      CUresult r = exec_for(g.first, exec);
      if (r == CUDA_SUCCESS) r = stream_for(g.second, stream);
      if (r == CUDA_SUCCESS && graph_execs_.at(g.first).device != bound_) r = CUDA_ERROR_INVALID_HANDLE;  // another device's stream
      if (r == CUDA_SUCCESS) r = driver_.graph_launch(exec, stream);
      return finish(r);
    }
    case wire::RequestKind::kGraphExecUpdate: {
      const auto g = payload_as<wire::GraphRequest>(request);
      cuda::CUgraphExec exec = nullptr;
      cuda::CUgraph graph = nullptr;
      cuda::CUgraphExecUpdateResultInfo info{};
      CUresult r = exec_for(g.first, exec);
      if (r == CUDA_SUCCESS) r = graph_for(g.second, graph);
      if (r == CUDA_SUCCESS) r = driver_.graph_exec_update(exec, graph, &info);
      const std::int32_t result = info.result;
      return finish(r, bytes_of(result));
    }
    case wire::RequestKind::kGraphDestroy: {
      auto it = graphs_.find(payload_as<wire::HandleRequest>(request).handle);
      if (it == graphs_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(it->second.device);
      const CUresult r = driver_.graph_destroy(it->second.handle);
      graphs_.erase(it);
      counters_.graphs.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    case wire::RequestKind::kGraphExecDestroy: {
      auto it = graph_execs_.find(payload_as<wire::HandleRequest>(request).handle);
      if (it == graph_execs_.end()) return finish(CUDA_ERROR_INVALID_HANDLE);
      bind(it->second.device);
      const CUresult r = driver_.graph_exec_destroy(it->second.handle);
      graph_execs_.erase(it);
      counters_.graphs.fetch_sub(1, std::memory_order_relaxed);
      return finish(r);
    }
    default:
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
  }
}

void DeviceSession::reclaim() {
  {
    std::lock_guard lock(host_funcs_.lock);
    host_funcs_.closed = true;
  }
  if (bound_ == kNoDevice) return;  // never touched the device
  // Each object is released in its own device's context, whatever thread this is.
  bound_ = kNoDevice;
  // Wait for the work the client left queued, and for the callbacks that will complete its
  // synchronize requests: they point at this session.
  for (const auto& [id, stream] : streams_) {
    bind(stream.device);
    driver_.stream_synchronize(stream.handle);
  }
  for (std::uint32_t d = 0; d < per_device_.size(); ++d) {
    if (per_device_[d].sync_stream == nullptr) continue;
    bind(d);
    driver_.stream_synchronize(per_device_[d].sync_stream);
  }
  // Pairs with the release decrement in finish_deferred().
  while (callbacks_in_flight_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  for (const auto& [id, exec] : graph_execs_) {
    bind(exec.device);
    driver_.graph_exec_destroy(exec.handle);
  }
  for (const auto& [id, graph] : graphs_) {
    bind(graph.device);
    driver_.graph_destroy(graph.handle);
  }
  counters_.graphs.fetch_sub(graph_execs_.size() + graphs_.size(), std::memory_order_relaxed);
  graph_execs_.clear();
  graphs_.clear();
  if (const cuda::CublasTable* blas = device_.blas()) {
    for (const auto& [id, handle] : blas_handles_) {
      bind(handle.device);
      blas->destroy(handle.handle);
    }
  }
  counters_.blas_handles.fetch_sub(blas_handles_.size(), std::memory_order_relaxed);
  blas_handles_.clear();
  counters_.modules.fetch_sub(modules_.size(), std::memory_order_relaxed);
  modules_.clear();
  functions_.clear();
  globals_.clear();
  for (std::uint32_t d = 0; d < per_device_.size(); ++d) {
    PerDevice& here = per_device_[d];
    bind(d);
    if (here.blas_lt != nullptr) device_.blas_lt()->destroy(std::exchange(here.blas_lt, nullptr));
    for (cuda::CUevent event : here.staging_events) driver_.event_destroy(event);
    here.staging_events.clear();
    for (const auto& [id, event] : here.blocking.events) driver_.event_destroy(event);
    here.blocking = {};
    if (here.sync_stream != nullptr) driver_.stream_destroy(std::exchange(here.sync_stream, nullptr));
  }
  for (const auto& [id, event] : events_) {
    bind(event.device);
    driver_.event_destroy(event.handle);
  }
  counters_.events.fetch_sub(events_.size(), std::memory_order_relaxed);
  for (const auto& [id, stream] : streams_) {
    bind(stream.device);
    driver_.stream_destroy(stream.handle);
  }
  counters_.streams.fetch_sub(streams_.size(), std::memory_order_relaxed);
  reclaim_vmm();
  for (const auto& [pointer, allocation] : allocations_) {
    bind(allocation.device);
    driver_.mem_free(pointer);
    release_device_bytes(allocation.device, allocation.bytes);
  }
  counters_.allocations.fetch_sub(allocations_.size(), std::memory_order_relaxed);
  for (const auto& [offset, range] : arena_ranges_) driver_.mem_host_unregister(range.host);
  counters_.arena_registrations.fetch_sub(arena_ranges_.size(), std::memory_order_relaxed);
  arena_ranges_.clear();
  pinned_bytes_ = 0;
  // Host registrations die with the arena mapping; the driver is told first.
  if (staging_registered_) driver_.mem_host_unregister(staging_base_);
  events_.clear();
  streams_.clear();
  allocations_.clear();
  ipc::log(ipc::LogLevel::kDebug, "session reclaimed");
}

// ---- cublasStrsmBatched --------------------------------------------------------------------

bool DeviceSession::read_pointer_array(std::uint64_t array, int count, cuda::CUstream stream,
                                       std::vector<std::uint64_t>& out) {
  const auto bytes = static_cast<std::uint64_t>(count) * sizeof(std::uint64_t);
  if (!owns_range(array, bytes)) return false;
  out.resize(static_cast<std::size_t>(count));
  return driver_.memcpy_dtoh_async(out.data(), array, bytes, stream) == CUDA_SUCCESS &&
         driver_.stream_synchronize(stream) == CUDA_SUCCESS;
}

// Like the pointer-array GEMM: the arrays live in device memory, are read in the handle's stream
// order, and every triangular matrix and right-hand side they name is checked against the
// session's memory before cuBLAS sees it.
int DeviceSession::trsm_batched(const wire::BlasTrsmRequest& r, cuda::cublasHandle_t handle) {
  static_assert(sizeof(wire::BlasTrsmRequest) == 72);
  const cuda::CublasTable& blas = *device_.blas();
  const bool left = r.side == cuda::CUBLAS_SIDE_LEFT;
  const std::int64_t k = left ? r.m : r.n;
  if ((r.side != cuda::CUBLAS_SIDE_LEFT && r.side != cuda::CUBLAS_SIDE_RIGHT) ||
      (r.uplo != cuda::CUBLAS_FILL_MODE_LOWER && r.uplo != cuda::CUBLAS_FILL_MODE_UPPER) ||
      (r.trans != cuda::CUBLAS_OP_N && r.trans != cuda::CUBLAS_OP_T && r.trans != cuda::CUBLAS_OP_C) ||
      (r.diag != cuda::CUBLAS_DIAG_NON_UNIT && r.diag != cuda::CUBLAS_DIAG_UNIT) || r.m < 0 || r.n < 0 ||
      r.batch_count < 0 || r.lda < std::max<std::int64_t>(1, k) || r.ldb < std::max(1, r.m)) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  if (r.m == 0 || r.n == 0 || r.batch_count == 0) return cuda::CUBLAS_STATUS_SUCCESS;
  const std::uint64_t a_bytes = static_cast<std::uint64_t>(r.lda * (k - 1) + k) * sizeof(float);
  const std::uint64_t b_bytes = static_cast<std::uint64_t>(static_cast<std::int64_t>(r.ldb) * (r.n - 1) + r.m) * sizeof(float);
  cuda::cudaStream_t stream = nullptr;
  blas.get_stream(handle, &stream);
  std::vector<std::uint64_t> a, b;
  if (!owns_range(r.a, static_cast<std::uint64_t>(r.batch_count) * 8) ||
      !owns_range(r.b, static_cast<std::uint64_t>(r.batch_count) * 8)) {
    return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!read_pointer_array(r.a, r.batch_count, stream, a) || !read_pointer_array(r.b, r.batch_count, stream, b)) {
    return cuda::CUBLAS_STATUS_EXECUTION_FAILED;
  }
  for (int i = 0; i < r.batch_count; ++i) {
    if (!owns_range(a[i], a_bytes) || !owns_range(b[i], b_bytes)) return cuda::CUBLAS_STATUS_INVALID_VALUE;
  }
  const float alpha = r.alpha;
  return blas.strsm_batched(handle, static_cast<cuda::cublasSideMode_t>(r.side), static_cast<cuda::cublasFillMode_t>(r.uplo),
                            static_cast<cuda::cublasOperation_t>(r.trans), static_cast<cuda::cublasDiagType_t>(r.diag),
                            r.m, r.n, &alpha, reinterpret_cast<const float* const*>(r.a), r.lda,
                            reinterpret_cast<float* const*>(r.b), r.ldb, r.batch_count);
}

// ---- VMM: the libcuda.so.1 shim's memory pool -------------------------------------------------

bool DeviceSession::vmm_covers(std::uint64_t pointer, std::uint64_t bytes, bool accessible_only) const {
  auto it = vmm_mappings_.upper_bound(pointer);
  if (it == vmm_mappings_.begin()) return false;
  --it;
  if (pointer - it->first >= it->second.bytes || pointer + bytes < pointer) return false;
  const std::uint64_t end = pointer + bytes;
  for (;;) {
    if (accessible_only && !it->second.accessible) return false;
    const std::uint64_t mapped_end = it->first + it->second.bytes;
    if (end <= mapped_end) return true;
    auto next = std::next(it);
    if (next == vmm_mappings_.end() || next->first != mapped_end) return false;
    it = next;
  }
}

void DeviceSession::vmm_forget_allocation(std::uint64_t id) {
  auto it = vmm_allocations_.find(id);
  if (it == vmm_allocations_.end() || !it->second.released || it->second.mappings != 0) return;
  release_device_bytes(it->second.device, it->second.bytes);
  counters_.allocations.fetch_sub(1, std::memory_order_relaxed);
  vmm_allocations_.erase(it);
}

ipc::Result<void> DeviceSession::handle_vmm(ipc::ServerSession& session, const wire::RequestSlot& request) {
  static_assert(sizeof(wire::VmmReserveRequest) == 32 && sizeof(wire::VmmCreateRequest) == 24 &&
                sizeof(wire::VmmMapRequest) == 40 && sizeof(wire::VmmAccessRequest) == 72 &&
                sizeof(wire::VmmGranularityRequest) == 8 && sizeof(wire::VmmRangeRequest) == 16);
  const wire::RequestHeader& h = request.header;
  auto finish = [&](CUresult status, std::span<const std::byte> result = {}) {
    return finish_request(session, h, status, result);
  };
  const wire::DeviceTable& devices = device_.devices();
  auto device_prop = [&](std::uint32_t device) {
    cuda::CUmemAllocationProp prop{};
    prop.type = cuda::CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = devices.devices[device].ordinal;
    return prop;
  };
  // The session reservation that holds all of [pointer, pointer + size), if any.
  auto reservation_holding = [&](std::uint64_t pointer, std::uint64_t size) {
    auto it = vmm_reservations_.upper_bound(pointer);
    if (it == vmm_reservations_.begin() || pointer + size < pointer) return false;
    --it;
    return pointer - it->first <= it->second && size <= it->second - (pointer - it->first);
  };
  // The session's mappings that make up exactly [pointer, pointer + size), back to back.
  auto whole_mappings = [&](std::uint64_t pointer, std::uint64_t size, std::vector<std::uint64_t>& found) {
    if (size == 0 || pointer + size < pointer) return false;
    std::uint64_t position = pointer;
    for (auto it = vmm_mappings_.find(pointer); it != vmm_mappings_.end() && it->first == position; ++it) {
      found.push_back(it->first);
      position += it->second.bytes;
      if (position >= pointer + size) break;
    }
    return position == pointer + size;
  };

  switch (static_cast<wire::RequestKind>(h.kind)) {
    case wire::RequestKind::kVmmGranularity: {
      const auto g = payload_as<wire::VmmGranularityRequest>(request);
      if (g.device >= devices.count) return finish(cuda::CUDA_ERROR_INVALID_DEVICE);
      const cuda::CUmemAllocationProp prop = device_prop(g.device);
      std::size_t granularity = 0;
      const CUresult r = driver_.mem_get_allocation_granularity(&granularity, &prop, g.option);
      const std::uint64_t value = granularity;
      return finish(r, bytes_of(value));
    }
    case wire::RequestKind::kVmmAddressReserve: {
      const auto v = payload_as<wire::VmmReserveRequest>(request);
      wire::PointerResult result{0};
      if (v.size == 0) return finish(CUDA_ERROR_INVALID_VALUE, bytes_of(result));
      if (v.size > kMaxVmmReservedBytes - vmm_reserved_bytes_ || vmm_reservations_.size() >= kMaxVmmReservations) {
        return finish(CUDA_ERROR_OUT_OF_MEMORY, bytes_of(result));
      }
      cuda::CUdeviceptr address = 0;
      const CUresult r = driver_.mem_address_reserve(&address, v.size, v.alignment, v.hint, v.flags);
      if (r == CUDA_SUCCESS) {
        vmm_reservations_[address] = v.size;
        vmm_reserved_bytes_ += v.size;
        result.pointer = address;
      }
      return finish(r, bytes_of(result));
    }
    case wire::RequestKind::kVmmAddressFree: {
      const auto v = payload_as<wire::VmmRangeRequest>(request);
      auto it = vmm_reservations_.find(v.pointer);
      if (it == vmm_reservations_.end() || it->second != v.size) return finish(CUDA_ERROR_INVALID_VALUE);
      auto mapped = vmm_mappings_.lower_bound(v.pointer);
      if (mapped != vmm_mappings_.end() && mapped->first - v.pointer < v.size) return finish(CUDA_ERROR_INVALID_VALUE);
      const CUresult r = driver_.mem_address_free(v.pointer, v.size);
      if (r == CUDA_SUCCESS) {
        vmm_reserved_bytes_ -= it->second;
        vmm_reservations_.erase(it);
      }
      return finish(r);
    }
    case wire::RequestKind::kVmmCreate: {
      const auto v = payload_as<wire::VmmCreateRequest>(request);
      std::uint64_t id = 0;
      if (v.device >= devices.count) return finish(cuda::CUDA_ERROR_INVALID_DEVICE, bytes_of(id));
      if (v.size == 0) return finish(CUDA_ERROR_INVALID_VALUE, bytes_of(id));
      // An exportable handle would name broker memory in the client's process: not offered.
      if (v.handle_types != 0) return finish(cuda::CUDA_ERROR_NOT_SUPPORTED, bytes_of(id));
      if (over_limit(v.device, v.size)) return finish(CUDA_ERROR_OUT_OF_MEMORY, bytes_of(id));
      const cuda::CUmemAllocationProp prop = device_prop(v.device);
      cuda::CUmemGenericAllocationHandle handle = 0;
      const CUresult r = driver_.mem_create(&handle, v.size, &prop, v.flags);
      if (r == CUDA_SUCCESS) {
        id = next_vmm_allocation_++;
        vmm_allocations_[id] = VmmAllocation{handle, v.size, v.device};
        hold_device_bytes(v.device, v.size);
        counters_.allocations.fetch_add(1, std::memory_order_relaxed);
      }
      return finish(r, bytes_of(id));
    }
    case wire::RequestKind::kVmmRelease: {
      const auto id = payload_as<wire::HandleRequest>(request).handle;
      auto it = vmm_allocations_.find(id);
      if (it == vmm_allocations_.end() || it->second.released) return finish(CUDA_ERROR_INVALID_VALUE);
      // Like cuMemRelease: the id is gone at once, the memory once it is unmapped everywhere.
      const CUresult r = driver_.mem_release(it->second.handle);
      it->second.released = true;
      vmm_forget_allocation(id);
      return finish(r);
    }
    case wire::RequestKind::kVmmMap: {
      const auto v = payload_as<wire::VmmMapRequest>(request);
      auto allocation = vmm_allocations_.find(v.allocation);
      if (allocation == vmm_allocations_.end() || allocation->second.released) return finish(CUDA_ERROR_INVALID_HANDLE);
      if (v.size == 0 || v.offset > allocation->second.bytes || v.size > allocation->second.bytes - v.offset ||
          !reservation_holding(v.pointer, v.size)) {
        return finish(CUDA_ERROR_INVALID_VALUE);
      }
      if (vmm_mappings_.size() >= kMaxVmmMappings) return finish(CUDA_ERROR_OUT_OF_MEMORY);
      auto next = vmm_mappings_.lower_bound(v.pointer);
      if ((next != vmm_mappings_.end() && next->first - v.pointer < v.size) ||
          (next != vmm_mappings_.begin() && std::prev(next)->first + std::prev(next)->second.bytes > v.pointer)) {
        return finish(CUDA_ERROR_INVALID_VALUE);  // overlaps a mapping
      }
      const CUresult r = driver_.mem_map(v.pointer, v.size, v.offset, allocation->second.handle, v.flags);
      if (r == CUDA_SUCCESS) {
        vmm_mappings_[v.pointer] = VmmMapping{v.size, v.allocation};
        ++allocation->second.mappings;
      }
      return finish(r);
    }
    case wire::RequestKind::kVmmUnmap: {
      const auto v = payload_as<wire::VmmRangeRequest>(request);
      std::vector<std::uint64_t> mappings;
      if (!whole_mappings(v.pointer, v.size, mappings)) return finish(CUDA_ERROR_INVALID_VALUE);
      CUresult status = CUDA_SUCCESS;
      for (std::uint64_t address : mappings) {
        auto it = vmm_mappings_.find(address);
        const CUresult r = driver_.mem_unmap(address, it->second.bytes);
        if (r != CUDA_SUCCESS) {
          status = r;
          continue;
        }
        const std::uint64_t allocation = it->second.allocation;
        vmm_mappings_.erase(it);
        --vmm_allocations_[allocation].mappings;
        vmm_forget_allocation(allocation);
      }
      return finish(status);
    }
    case wire::RequestKind::kVmmSetAccess: {
      const auto v = payload_as<wire::VmmAccessRequest>(request);
      if (v.count == 0 || v.count > wire::kMaxVmmAccessDescriptors) return finish(CUDA_ERROR_INVALID_VALUE);
      cuda::CUmemAccessDesc descriptors[wire::kMaxVmmAccessDescriptors]{};
      bool accessible = false;
      for (std::uint32_t i = 0; i < v.count; ++i) {
        const auto& d = v.descriptors[i];
        if (d.location_type != cuda::CU_MEM_LOCATION_TYPE_DEVICE) return finish(CUDA_ERROR_INVALID_VALUE);
        if (d.device >= devices.count) return finish(cuda::CUDA_ERROR_INVALID_DEVICE);
        if (d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_NONE && d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_READ &&
            d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE) {
          return finish(CUDA_ERROR_INVALID_VALUE);
        }
        descriptors[i].location.type = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
        descriptors[i].location.id = devices.devices[d.device].ordinal;
        descriptors[i].flags = d.flags;
        accessible = accessible || d.flags == cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      }
      std::vector<std::uint64_t> mappings;
      if (!whole_mappings(v.pointer, v.size, mappings)) return finish(CUDA_ERROR_INVALID_VALUE);
      const CUresult r = driver_.mem_set_access(v.pointer, v.size, descriptors, v.count);
      if (r == CUDA_SUCCESS) {
        for (std::uint64_t address : mappings) vmm_mappings_[address].accessible = accessible;
      }
      return finish(r);
    }
    default:
      return ipc::IpcError{ipc::IpcErrc::kProtocol, 0, static_cast<std::int64_t>(ipc::ViolationCode::kUnknownKind)};
  }
}

// After the session's streams are done: unmap, release, then give the address ranges back.
void DeviceSession::reclaim_vmm() {
  for (const auto& [address, mapping] : vmm_mappings_) driver_.mem_unmap(address, mapping.bytes);
  vmm_mappings_.clear();
  for (auto& [id, allocation] : vmm_allocations_) {
    if (!allocation.released) driver_.mem_release(allocation.handle);
    allocation.released = true;
    allocation.mappings = 0;
  }
  while (!vmm_allocations_.empty()) vmm_forget_allocation(vmm_allocations_.begin()->first);
  for (const auto& [address, bytes] : vmm_reservations_) driver_.mem_address_free(address, bytes);
  vmm_reservations_.clear();
  vmm_reserved_bytes_ = 0;
}

}  // namespace gpubroker::broker
