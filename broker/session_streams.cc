#include "broker/session_streams.h"

#include <vector>

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

// The keys of the session's per-device default streams in SessionStreams::streams_. The client's
// own stream ids never reach this range: it counts as default stream ids too.
constexpr std::uint64_t kDefaultStreamKeys = 1ull << 63;
std::uint64_t default_key(std::uint32_t device) { return kDefaultStreamKeys + device; }

bool is_default_stream(std::uint64_t id) { return id <= 2 || id >= kDefaultStreamKeys; }

// A completion written by the completion poller once the last of `remaining` streams is done.
struct DeferredCompletion {
  ipc::ServerSession* session;
  wire::RequestHeader request;
  std::atomic<std::uint32_t> remaining;
  std::atomic<CUresult> status;  // the first failure wins
  std::atomic<std::uint32_t>* in_flight;
  std::atomic<int>* sticky;  // the session's sticky error
};

// One stream of a DeferredCompletion is done, with `status`. Runs on the poller's thread or, for
// a stream already idle, on the dispatcher's.
void finish_deferred(void* context, CUresult status) {
  auto* deferred = static_cast<DeferredCompletion*>(context);
  CUresult none = CUDA_SUCCESS;
  if (status != CUDA_SUCCESS) deferred->status.compare_exchange_strong(none, status, std::memory_order_relaxed);
  if (cuda::poisons_context(static_cast<int>(status))) {
    int clean = 0;
    deferred->sticky->compare_exchange_strong(clean, static_cast<int>(status), std::memory_order_relaxed);
  }
  if (deferred->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  deferred->session->complete(deferred->request, deferred->status.load(std::memory_order_relaxed));
  std::atomic<std::uint32_t>* in_flight = deferred->in_flight;
  delete deferred;
  // Pairs with the acquire load in DeviceSession::quiesce(): after this the session may go.
  in_flight->fetch_sub(1, std::memory_order_release);
}

}  // namespace

SessionStreams::SessionStreams(DeviceSession& session)
    : session_(session), driver_(session.driver()), per_device_(session.device_count()) {}

Lookup<cuda::CUstream> SessionStreams::stream_for(std::uint64_t id) {
  const std::uint32_t current = session_.current_device();
  const std::uint64_t key = is_default_stream(id) ? default_key(current) : id;
  if (auto it = streams_.find(key); it != streams_.end()) {
    const cuda::CUstream stream = it->second.owner.get();
    session_.bind(it->second.device);  // work on a stream runs in its own device's context
    if (!per_device_[it->second.device].blocking.streams.empty()) {
      if (CUresult r = join_legacy(key, stream); r != CUDA_SUCCESS) return CallError{r};
    }
    return stream;
  }
  if (key != default_key(current)) return CallError{CUDA_ERROR_INVALID_HANDLE};
  session_.bind(current);
  cuda::CUstream stream = nullptr;
  if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  streams_.emplace(key, Stream{OwnedStream(stream, DestroyStream{&driver_, session_.on(current)}, &session_.counters().streams),
                               0, current});
  return stream;
}

// The legacy default stream's contract, within the session: work on the default stream waits for
// the work already on every blocking stream (created without cudaStreamNonBlocking), and work on a
// blocking stream waits for the work already on the default stream. Each join is an event record
// and a wait, made only when the other side has had work since the last join; a session without
// blocking streams never comes here. Each device has its own; the stream's device is the bound one.
cuda::CUresult SessionStreams::join_legacy(std::uint64_t key, cuda::CUstream stream) {
  const std::uint32_t device = session_.bound_device();
  BlockingStreams& blocking = per_device_[device].blocking;
  const std::uint64_t default_stream = default_key(device);
  auto join = [&](std::uint64_t from_key, cuda::CUstream from, cuda::CUstream to) -> CUresult {
    auto it = blocking.events.find(from_key);
    if (it == blocking.events.end()) {
      cuda::CUevent event = nullptr;
      if (CUresult r = driver_.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING); r != CUDA_SUCCESS) return r;
      it = blocking.events.emplace(from_key, OwnedEvent(event, DestroyEvent{&driver_, session_.on(device)}, nullptr)).first;
    }
    if (CUresult r = driver_.event_record(it->second.get(), from); r != CUDA_SUCCESS) return r;
    return driver_.stream_wait_event(to, it->second.get(), 0);
  };
  if (key == default_stream) {
    for (std::uint64_t b : blocking.ahead_of_default) {
      auto ahead = streams_.find(b);
      if (ahead == streams_.end()) continue;  // destroyed: forget_blocking took it out already
      if (CUresult r = join(b, ahead->second.owner.get(), stream); r != CUDA_SUCCESS) return r;
    }
    blocking.ahead_of_default.clear();
    blocking.behind_default = blocking.streams;
    return CUDA_SUCCESS;
  }
  if (!blocking.streams.contains(key)) return CUDA_SUCCESS;
  if (blocking.behind_default.erase(key) != 0) {
    auto joined = streams_.find(default_stream);
    if (joined == streams_.end()) return cuda::CUDA_ERROR_INVALID_HANDLE;  // never made (create_stream makes it first)
    if (CUresult r = join(default_stream, joined->second.owner.get(), stream); r != CUDA_SUCCESS) return r;
  }
  blocking.ahead_of_default.insert(key);
  return CUDA_SUCCESS;
}

void SessionStreams::forget_blocking(std::uint64_t key) {
  BlockingStreams& blocking = per_device_[streams_.at(key).device].blocking;
  blocking.streams.erase(key);
  blocking.ahead_of_default.erase(key);
  blocking.behind_default.erase(key);
  blocking.events.erase(key);
}

Lookup<cuda::CUevent> SessionStreams::event_for(std::uint64_t id) const {
  auto it = events_.find(id);
  if (it == events_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return it->second.owner.get();
}

// A host function launched into a capturing stream is captured, not run: a synchronize completed
// that way would never complete, and the session could never be reclaimed. CUDA refuses to
// synchronize a capturing stream, and so does the broker.
bool SessionStreams::any_capturing(std::span<const cuda::CUstream> streams) const {
  for (cuda::CUstream stream : streams) {
    cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
    if (driver_.stream_is_capturing(stream, &capturing) == CUDA_SUCCESS && capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
      return true;
    }
  }
  return false;
}

Outcome<wire::NoReply> SessionStreams::complete_after(CallContext& call, std::span<const cuda::CUstream> streams) {
  if (any_capturing(streams)) return CallError{cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED};
  // Nothing to wait for: answered now (a completion waiting for no stream would never be written,
  // and the session could never be reclaimed).
  if (streams.empty()) return answer(session_.take_pending_error());
  auto* deferred = new DeferredCompletion{&call.session, call.header(), {static_cast<std::uint32_t>(streams.size())},
                                          {session_.take_pending_error()}, &session_.callbacks_in_flight(),
                                          &session_.sticky_error()};
  session_.callbacks_in_flight().fetch_add(1, std::memory_order_relaxed);
  for (cuda::CUstream stream : streams) {
    // A stream with nothing left to do answers at once; the others when the poller sees them done.
    const CUresult idle = driver_.stream_query(stream);
    if (idle == cuda::CUDA_ERROR_NOT_READY) {
      if (CUresult r = session_.device().completions(session_.bound_device()).watch(stream, finish_deferred, deferred);
          r != CUDA_SUCCESS) {
        finish_deferred(deferred, r);  // counts for this stream; the others still finish theirs
      }
    } else {
      finish_deferred(deferred, idle);
    }
  }
  return kCompletesLater;
}

Outcome<wire::NoReply> SessionStreams::complete_after(CallContext& call, cuda::CUstream stream) {
  return complete_after(call, std::span(&stream, 1));
}

void SessionStreams::synchronize_everything() {
  for (const auto& [id, stream] : streams_) {
    session_.bind(stream.device);
    driver_.stream_synchronize(stream.owner.get());
  }
  for (std::uint32_t device = 0; device < per_device_.size(); ++device) {
    if (!per_device_[device].sync_stream) continue;
    session_.bind(device);
    driver_.stream_synchronize(per_device_[device].sync_stream->get());
  }
}

Outcome<wire::NoReply> SessionStreams::create_stream(CallContext&, const wire::StreamCreateRequest& c) {
  if (is_default_stream(c.stream) || streams_.contains(c.stream)) return CallError{CUDA_ERROR_INVALID_VALUE};
  const std::uint32_t device = session_.current_device();
  // A blocking stream joins the default stream, which must exist first: if it cannot be made,
  // neither is this one (a join would otherwise look up a stream that is not there).
  if ((c.flags & cuda::CU_STREAM_NON_BLOCKING) == 0) {
    if (auto made = stream_for(0); !made) return made.error();
  }
  session_.bind(device);
  cuda::CUstream stream = nullptr;
  if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, c.priority);
      r != CUDA_SUCCESS) {
    return CallError{r};
  }
  streams_.emplace(c.stream, Stream{OwnedStream(stream, DestroyStream{&driver_, session_.on(device)},
                                                &session_.counters().streams),
                                    c.flags, device});
  if ((c.flags & cuda::CU_STREAM_NON_BLOCKING) == 0) {
    per_device_[device].blocking.streams.insert(c.stream);
    per_device_[device].blocking.behind_default.insert(c.stream);
  }
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionStreams::destroy_stream(CallContext&, const wire::HandleRequest& request) {
  auto it = streams_.find(request.handle);
  if (is_default_stream(request.handle) || it == streams_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  // Like cuStreamDestroy: work already queued still runs; the handle is gone at once.
  forget_blocking(request.handle);
  const int r = it->second.owner.reset();
  streams_.erase(it);
  return answer(r);
}

Outcome<wire::NoReply> SessionStreams::synchronize_stream(CallContext& call, const wire::HandleRequest& request) {
  auto stream = stream_for(request.handle);
  if (!stream) return stream.error();
  return complete_after(call, stream.value());
}

Outcome<wire::NoReply> SessionStreams::query_stream(CallContext&, const wire::HandleRequest& request) {
  auto stream = stream_for(request.handle);
  if (!stream) return stream.error();
  return answer(driver_.stream_query(stream.value()));
}

Outcome<wire::NoReply> SessionStreams::wait_event(CallContext&, const wire::EventStreamRequest& w) {
  auto stream = stream_for(w.stream);
  if (!stream) return stream.error();
  auto event = event_for(w.event);
  if (!event) return event.error();
  return answer(driver_.stream_wait_event(stream.value(), event.value(), 0));
}

// The flags the client created the stream with: the broker's own stream is non-blocking whatever
// they were, and keeps the legacy contract itself.
Outcome<std::uint32_t> SessionStreams::stream_flags(CallContext&, const wire::HandleRequest& request) {
  if (is_default_stream(request.handle)) return std::uint32_t{0};
  auto it = streams_.find(request.handle);
  if (it == streams_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return it->second.flags;
}

Outcome<std::int32_t> SessionStreams::stream_priority(CallContext&, const wire::HandleRequest& request) {
  auto stream = stream_for(request.handle);
  if (!stream) return stream.error();
  int priority = 0;
  const CUresult r = driver_.stream_get_priority(stream.value(), &priority);
  return answer(r, static_cast<std::int32_t>(priority));
}

Outcome<wire::NoReply> SessionStreams::create_event(CallContext&, const wire::EventCreateRequest& c) {
  if (events_.contains(c.event)) return CallError{CUDA_ERROR_INVALID_VALUE};
  const std::uint32_t device = session_.current_device();
  session_.bind(device);
  cuda::CUevent event = nullptr;
  if (CUresult r = driver_.event_create(&event, c.flags); r != CUDA_SUCCESS) return CallError{r};
  events_.emplace(c.event, Event{OwnedEvent(event, DestroyEvent{&driver_, session_.on(device)}, &session_.counters().events),
                                 device});
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionStreams::destroy_event(CallContext&, const wire::HandleRequest& request) {
  auto it = events_.find(request.handle);
  if (it == events_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const int r = it->second.owner.reset();
  events_.erase(it);
  return answer(r);
}

Outcome<wire::NoReply> SessionStreams::record_event(CallContext& call, const wire::EventStreamRequest& e) {
  return record_event_with_flags(call, wire::EventRecordRequest{e.event, e.stream, 0, 0});
}

Outcome<wire::NoReply> SessionStreams::record_event_with_flags(CallContext&, const wire::EventRecordRequest& e) {
  auto event = event_for(e.event);
  if (!event) return event.error();
  auto stream = stream_for(e.stream);
  if (!stream) return stream.error();
  // As cudaEventRecord: the event and the stream must be of one device.
  if (events_.at(e.event).device != session_.bound_device()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  if (e.flags == 0) return answer(driver_.event_record(event.value(), stream.value()));
  if (e.flags != cuda::CU_EVENT_RECORD_EXTERNAL) return CallError{CUDA_ERROR_INVALID_VALUE};
  return answer(driver_.event_record_with_flags(event.value(), stream.value(), e.flags));
}

Outcome<wire::NoReply> SessionStreams::synchronize_event(CallContext& call, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  // On the event's own device, whichever is current.
  const std::uint32_t device = events_.at(request.handle).device;
  session_.bind(device);
  std::optional<OwnedStream>& sync_stream = per_device_[device].sync_stream;
  if (!sync_stream) {
    cuda::CUstream stream = nullptr;
    if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0); r != CUDA_SUCCESS) {
      return CallError{r};
    }
    sync_stream.emplace(stream, DestroyStream{&driver_, session_.on(device)}, nullptr);
  }
  // The wait happens on a private stream, and its end is a callback: nothing blocks here.
  if (CUresult r = driver_.stream_wait_event(sync_stream->get(), event.value(), 0); r != CUDA_SUCCESS) return CallError{r};
  return complete_after(call, sync_stream->get());
}

Outcome<wire::NoReply> SessionStreams::query_event(CallContext&, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  session_.bind(events_.at(request.handle).device);
  return answer(driver_.event_query(event.value()));
}

Outcome<float> SessionStreams::elapsed_time(CallContext&, const wire::EventPairRequest& p) {
  auto start = event_for(p.start);
  if (!start) return start.error();
  auto end = event_for(p.end);
  if (!end) return end.error();
  // As cudaEventElapsedTime: two events of one device.
  if (events_.at(p.start).device != events_.at(p.end).device) return CallError{CUDA_ERROR_INVALID_HANDLE};
  session_.bind(events_.at(p.start).device);
  float milliseconds = 0;
  const CUresult r = driver_.event_elapsed_time(&milliseconds, start.value(), end.value());
  return answer(r, milliseconds);
}

// The current device's streams, as cudaDeviceSynchronize covers the current device only.
Outcome<wire::NoReply> SessionStreams::synchronize_all(CallContext& call, wire::NoPayload) {
  if (auto made = stream_for(0); !made) return made.error();
  const std::uint32_t current = session_.current_device();
  std::vector<cuda::CUstream> all;
  for (const auto& [id, stream] : streams_) {
    if (stream.device == current) all.push_back(stream.owner.get());
  }
  session_.bind(current);
  return complete_after(call, all);
}

}  // namespace gpubroker::broker
