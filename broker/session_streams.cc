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

SessionStreams::SessionStreams(DeviceSession& session) : session_(session), per_device_(session.device_count()) {}

Lookup<OwnedStream> SessionStreams::make_stream(const DeviceContext& context, int priority, bool counted) {
  cuda::CUstream stream = nullptr;
  if (CUresult r = context.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, priority);
      r != CUDA_SUCCESS) {
    return CallError{r};
  }
  return OwnedStream(stream, DestroyStream{&context}, counted ? &session_.counters().streams : nullptr);
}

Lookup<SessionStream> SessionStreams::stream_for(std::uint64_t id) {
  const std::uint32_t current = session_.current_device();
  const std::uint64_t key = is_default_stream(id) ? default_key(current) : id;
  if (auto it = streams_.find(key); it != streams_.end()) {
    const SessionStream stream{it->second.owner.get(), it->second.context};
    if (!per_device_[stream.context->ordinal()].blocking.streams.empty()) {
      if (CUresult r = join_legacy(key, stream); r != CUDA_SUCCESS) return CallError{r};
    }
    return stream;
  }
  if (key != default_key(current)) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const DeviceContext& context = session_.context(current);
  auto made = make_stream(context, 0, true);
  if (!made) return made.error();
  const cuda::CUstream stream = made.value().get();
  streams_.emplace(key, Stream{std::move(made.value()), 0, &context});
  return SessionStream{stream, &context};
}

std::optional<SessionStream> SessionStreams::find_stream(std::uint64_t id, std::uint32_t device) const {
  auto it = streams_.find(is_default_stream(id) ? default_key(device) : id);
  if (it == streams_.end() || it->second.context->ordinal() != device) return std::nullopt;
  return SessionStream{it->second.owner.get(), it->second.context};
}

// The legacy default stream's contract, within the session: work on the default stream waits for
// the work already on every blocking stream (created without cudaStreamNonBlocking), and work on a
// blocking stream waits for the work already on the default stream. Each join is an event record
// and a wait, made only when the other side has had work since the last join; a session without
// blocking streams never comes here. Each device has its own.
cuda::CUresult SessionStreams::join_legacy(std::uint64_t key, const SessionStream& stream) {
  const DeviceContext& context = *stream.context;
  BlockingStreams& blocking = per_device_[context.ordinal()].blocking;
  const std::uint64_t default_stream = default_key(context.ordinal());
  auto join = [&](std::uint64_t from_key, cuda::CUstream from, cuda::CUstream to) -> CUresult {
    auto it = blocking.events.find(from_key);
    if (it == blocking.events.end()) {
      cuda::CUevent event = nullptr;
      if (CUresult r = context.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING); r != CUDA_SUCCESS) return r;
      it = blocking.events.emplace(from_key, OwnedEvent(event, DestroyEvent{&context}, nullptr)).first;
    }
    if (CUresult r = context.event_record(it->second.get(), from); r != CUDA_SUCCESS) return r;
    return context.stream_wait_event(to, it->second.get(), 0);
  };
  if (key == default_stream) {
    for (std::uint64_t b : blocking.ahead_of_default) {
      auto ahead = streams_.find(b);
      if (ahead == streams_.end()) continue;  // destroyed: forget_blocking took it out already
      if (CUresult r = join(b, ahead->second.owner.get(), stream.handle); r != CUDA_SUCCESS) return r;
    }
    blocking.ahead_of_default.clear();
    blocking.behind_default = blocking.streams;
    return CUDA_SUCCESS;
  }
  if (!blocking.streams.contains(key)) return CUDA_SUCCESS;
  if (blocking.behind_default.erase(key) != 0) {
    auto joined = streams_.find(default_stream);
    if (joined == streams_.end()) return cuda::CUDA_ERROR_INVALID_HANDLE;  // never made (create_stream makes it first)
    if (CUresult r = join(default_stream, joined->second.owner.get(), stream.handle); r != CUDA_SUCCESS) return r;
  }
  blocking.ahead_of_default.insert(key);
  return CUDA_SUCCESS;
}

void SessionStreams::forget_blocking(std::uint64_t key) {
  BlockingStreams& blocking = per_device_[streams_.at(key).context->ordinal()].blocking;
  blocking.streams.erase(key);
  blocking.ahead_of_default.erase(key);
  blocking.behind_default.erase(key);
  blocking.events.erase(key);
}

Lookup<SessionStreams::SessionEvent> SessionStreams::event_for(std::uint64_t id) const {
  auto it = events_.find(id);
  if (it == events_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return SessionEvent{it->second.owner.get(), it->second.context};
}

// A host function launched into a capturing stream is captured, not run: a synchronize completed
// that way would never complete, and the session could never be reclaimed. CUDA refuses to
// synchronize a capturing stream, and so does the broker.
bool SessionStreams::any_capturing(const DeviceContext& context, std::span<const cuda::CUstream> streams) {
  for (cuda::CUstream stream : streams) {
    cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
    if (context.stream_is_capturing(stream, &capturing) == CUDA_SUCCESS && capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
      return true;
    }
  }
  return false;
}

Outcome<wire::NoReply> SessionStreams::complete_after(CallContext& call, const DeviceContext& context,
                                                      std::span<const cuda::CUstream> streams) {
  if (any_capturing(context, streams)) return CallError{cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED};
  // Nothing to wait for: answered now (a completion waiting for no stream would never be written,
  // and the session could never be reclaimed).
  if (streams.empty()) return answer(session_.take_pending_error());
  auto* deferred = new DeferredCompletion{&call.session, call.header(), {static_cast<std::uint32_t>(streams.size())},
                                          {session_.take_pending_error()}, &session_.callbacks_in_flight(),
                                          &session_.sticky_error()};
  session_.callbacks_in_flight().fetch_add(1, std::memory_order_relaxed);
  for (cuda::CUstream stream : streams) {
    // A stream with nothing left to do answers at once; the others when the poller sees them done.
    const CUresult idle = context.stream_query(stream);
    if (idle == cuda::CUDA_ERROR_NOT_READY) {
      if (CUresult r = context.completions().watch(stream, finish_deferred, deferred); r != CUDA_SUCCESS) {
        finish_deferred(deferred, r);  // counts for this stream; the others still finish theirs
      }
    } else {
      finish_deferred(deferred, idle);
    }
  }
  return kCompletesLater;
}

Outcome<wire::NoReply> SessionStreams::complete_after(CallContext& call, const SessionStream& stream) {
  return complete_after(call, *stream.context, std::span(&stream.handle, 1));
}

void SessionStreams::synchronize_everything() {
  for (const auto& [id, stream] : streams_) stream.context->stream_synchronize(stream.owner.get());
  for (std::uint32_t device = 0; device < per_device_.size(); ++device) {
    if (per_device_[device].sync_stream) session_.context(device).stream_synchronize(per_device_[device].sync_stream->get());
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
  const DeviceContext& context = session_.context(device);
  auto made = make_stream(context, c.priority, true);
  if (!made) return made.error();
  streams_.emplace(c.stream, Stream{std::move(made.value()), c.flags, &context});
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
  return answer(stream.value().context->stream_query(stream.value().handle));
}

Outcome<wire::NoReply> SessionStreams::wait_event(CallContext&, const wire::EventStreamRequest& w) {
  auto stream = stream_for(w.stream);
  if (!stream) return stream.error();
  auto event = event_for(w.event);
  if (!event) return event.error();
  // Across devices too, as cudaStreamWaitEvent allows: the wait runs in the stream's context.
  return answer(stream.value().context->stream_wait_event(stream.value().handle, event.value().handle, 0));
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
  const CUresult r = stream.value().context->stream_get_priority(stream.value().handle, &priority);
  return answer(r, static_cast<std::int32_t>(priority));
}

Outcome<wire::NoReply> SessionStreams::create_event(CallContext&, const wire::EventCreateRequest& c) {
  if (events_.contains(c.event)) return CallError{CUDA_ERROR_INVALID_VALUE};
  const DeviceContext& context = session_.current_context();
  cuda::CUevent event = nullptr;
  if (CUresult r = context.event_create(&event, c.flags); r != CUDA_SUCCESS) return CallError{r};
  events_.emplace(c.event, Event{OwnedEvent(event, DestroyEvent{&context}, &session_.counters().events), &context});
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
  const DeviceContext& context = *stream.value().context;
  if (event.value().context != &context) return CallError{CUDA_ERROR_INVALID_HANDLE};
  if (e.flags == 0) return answer(context.event_record(event.value().handle, stream.value().handle));
  if (e.flags != cuda::CU_EVENT_RECORD_EXTERNAL) return CallError{CUDA_ERROR_INVALID_VALUE};
  return answer(context.event_record_with_flags(event.value().handle, stream.value().handle, e.flags));
}

Outcome<wire::NoReply> SessionStreams::synchronize_event(CallContext& call, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  // On the event's own device, whichever is current.
  const DeviceContext& context = *event.value().context;
  std::optional<OwnedStream>& sync_stream = per_device_[context.ordinal()].sync_stream;
  if (!sync_stream) {
    auto made = make_stream(context, 0, false);
    if (!made) return made.error();
    sync_stream.emplace(std::move(made.value()));
  }
  // The wait happens on a private stream, and its end is a callback: nothing blocks here.
  const SessionStream waiting{sync_stream->get(), &context};
  if (CUresult r = context.stream_wait_event(waiting.handle, event.value().handle, 0); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  return complete_after(call, waiting);
}

Outcome<wire::NoReply> SessionStreams::query_event(CallContext&, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  return answer(event.value().context->event_query(event.value().handle));
}

Outcome<float> SessionStreams::elapsed_time(CallContext&, const wire::EventPairRequest& p) {
  auto start = event_for(p.start);
  if (!start) return start.error();
  auto end = event_for(p.end);
  if (!end) return end.error();
  // As cudaEventElapsedTime: two events of one device.
  if (start.value().context != end.value().context) return CallError{CUDA_ERROR_INVALID_HANDLE};
  float milliseconds = 0;
  const CUresult r = start.value().context->event_elapsed_time(&milliseconds, start.value().handle, end.value().handle);
  return answer(r, milliseconds);
}

// The current device's streams, as cudaDeviceSynchronize covers the current device only. A
// device the session never used has none, and none is made for it (cudaFreeHost synchronizes
// every visible device).
Outcome<wire::NoReply> SessionStreams::synchronize_all(CallContext& call, wire::NoPayload) {
  const DeviceContext& context = session_.current_context();
  return complete_after(call, context, streams_on(context, true));
}

// cudaFree's wait: this session's work on the memory's device, never another session's. A stream
// being captured has queued nothing yet (a graph over the memory is refused at launch once it is
// freed), so it is passed by rather than refusing the free.
Outcome<wire::NoReply> SessionStreams::synchronize_for_free(CallContext& call, const DeviceContext& context) {
  return complete_after(call, context, streams_on(context, false));
}

std::vector<cuda::CUstream> SessionStreams::streams_on(const DeviceContext& context, bool capturing_too) const {
  std::vector<cuda::CUstream> found;
  for (const auto& [id, stream] : streams_) {
    if (stream.context != &context) continue;
    if (!capturing_too && any_capturing(context, std::span(&stream.owner.get(), 1))) continue;
    found.push_back(stream.owner.get());
  }
  return found;
}

}  // namespace gpubroker::broker
