#include "broker/session_streams.h"

#include <vector>

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

bool is_default_stream(std::uint64_t id) { return id <= 2; }

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

SessionStreams::SessionStreams(DeviceSession& session) : session_(session), driver_(session.driver()) {}

Lookup<cuda::CUstream> SessionStreams::stream_for(std::uint64_t id) {
  const std::uint64_t key = is_default_stream(id) ? 0 : id;
  if (auto it = streams_.find(key); it != streams_.end()) {
    const cuda::CUstream stream = it->second.owner.get();
    if (!blocking_.streams.empty()) {
      if (CUresult r = join_legacy(key, stream); r != CUDA_SUCCESS) return CallError{r};
    }
    return stream;
  }
  if (key != 0) return CallError{CUDA_ERROR_INVALID_HANDLE};
  cuda::CUstream stream = nullptr;
  if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  streams_.emplace(0, Stream{OwnedStream(stream, DestroyStream{&driver_}, &session_.counters().streams), 0});
  return stream;
}

// The legacy default stream's contract, within the session: work on the default stream waits for
// the work already on every blocking stream (created without cudaStreamNonBlocking), and work on a
// blocking stream waits for the work already on the default stream. Each join is an event record
// and a wait, made only when the other side has had work since the last join; a session without
// blocking streams never comes here.
cuda::CUresult SessionStreams::join_legacy(std::uint64_t key, cuda::CUstream stream) {
  auto join = [&](std::uint64_t from_key, cuda::CUstream from, cuda::CUstream to) -> CUresult {
    auto it = blocking_.events.find(from_key);
    if (it == blocking_.events.end()) {
      cuda::CUevent event = nullptr;
      if (CUresult r = driver_.event_create(&event, cuda::CU_EVENT_DISABLE_TIMING); r != CUDA_SUCCESS) return r;
      it = blocking_.events.emplace(from_key, OwnedEvent(event, DestroyEvent{&driver_}, nullptr)).first;
    }
    if (CUresult r = driver_.event_record(it->second.get(), from); r != CUDA_SUCCESS) return r;
    return driver_.stream_wait_event(to, it->second.get(), 0);
  };
  if (key == 0) {
    for (std::uint64_t b : blocking_.ahead_of_default) {
      if (CUresult r = join(b, streams_.at(b).owner.get(), stream); r != CUDA_SUCCESS) return r;
    }
    blocking_.ahead_of_default.clear();
    blocking_.behind_default = blocking_.streams;
    return CUDA_SUCCESS;
  }
  if (!blocking_.streams.contains(key)) return CUDA_SUCCESS;
  if (blocking_.behind_default.erase(key) != 0) {
    if (CUresult r = join(0, streams_.at(0).owner.get(), stream); r != CUDA_SUCCESS) return r;
  }
  blocking_.ahead_of_default.insert(key);
  return CUDA_SUCCESS;
}

void SessionStreams::forget_blocking(std::uint64_t key) {
  blocking_.streams.erase(key);
  blocking_.ahead_of_default.erase(key);
  blocking_.behind_default.erase(key);
  blocking_.events.erase(key);
}

Lookup<cuda::CUevent> SessionStreams::event_for(std::uint64_t id) const {
  auto it = events_.find(id);
  if (it == events_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return it->second.get();
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
  auto* deferred = new DeferredCompletion{&call.session, call.header(), {static_cast<std::uint32_t>(streams.size())},
                                          {session_.take_pending_error()}, &session_.callbacks_in_flight(),
                                          &session_.sticky_error()};
  session_.callbacks_in_flight().fetch_add(1, std::memory_order_relaxed);
  for (cuda::CUstream stream : streams) {
    // A stream with nothing left to do answers at once; the others when the poller sees them done.
    const CUresult idle = driver_.stream_query(stream);
    if (idle == cuda::CUDA_ERROR_NOT_READY) {
      if (CUresult r = session_.device().completions().watch(stream, finish_deferred, deferred); r != CUDA_SUCCESS) {
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
  for (const auto& [id, stream] : streams_) driver_.stream_synchronize(stream.owner.get());
  if (sync_stream_) driver_.stream_synchronize(sync_stream_->get());
}

Outcome<wire::NoReply> SessionStreams::create_stream(CallContext&, const wire::StreamCreateRequest& c) {
  if (is_default_stream(c.stream) || streams_.contains(c.stream)) return CallError{CUDA_ERROR_INVALID_VALUE};
  cuda::CUstream stream = nullptr;
  if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, c.priority);
      r != CUDA_SUCCESS) {
    return CallError{r};
  }
  streams_.emplace(c.stream, Stream{OwnedStream(stream, DestroyStream{&driver_}, &session_.counters().streams), c.flags});
  if ((c.flags & cuda::CU_STREAM_NON_BLOCKING) == 0) {
    (void)stream_for(0);  // the default stream exists before anything joins it
    blocking_.streams.insert(c.stream);
    blocking_.behind_default.insert(c.stream);
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
  cuda::CUevent event = nullptr;
  if (CUresult r = driver_.event_create(&event, c.flags); r != CUDA_SUCCESS) return CallError{r};
  events_.emplace(c.event, OwnedEvent(event, DestroyEvent{&driver_}, &session_.counters().events));
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionStreams::destroy_event(CallContext&, const wire::HandleRequest& request) {
  auto it = events_.find(request.handle);
  if (it == events_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const int r = it->second.reset();
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
  if (e.flags == 0) return answer(driver_.event_record(event.value(), stream.value()));
  if (e.flags != cuda::CU_EVENT_RECORD_EXTERNAL) return CallError{CUDA_ERROR_INVALID_VALUE};
  return answer(driver_.event_record_with_flags(event.value(), stream.value(), e.flags));
}

Outcome<wire::NoReply> SessionStreams::synchronize_event(CallContext& call, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  if (!sync_stream_) {
    cuda::CUstream stream = nullptr;
    if (CUresult r = driver_.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0); r != CUDA_SUCCESS) {
      return CallError{r};
    }
    sync_stream_.emplace(stream, DestroyStream{&driver_}, nullptr);
  }
  // The wait happens on a private stream, and its end is a callback: nothing blocks here.
  if (CUresult r = driver_.stream_wait_event(sync_stream_->get(), event.value(), 0); r != CUDA_SUCCESS) return CallError{r};
  return complete_after(call, sync_stream_->get());
}

Outcome<wire::NoReply> SessionStreams::query_event(CallContext&, const wire::HandleRequest& request) {
  auto event = event_for(request.handle);
  if (!event) return event.error();
  return answer(driver_.event_query(event.value()));
}

Outcome<float> SessionStreams::elapsed_time(CallContext&, const wire::EventPairRequest& p) {
  auto start = event_for(p.start);
  if (!start) return start.error();
  auto end = event_for(p.end);
  if (!end) return end.error();
  float milliseconds = 0;
  const CUresult r = driver_.event_elapsed_time(&milliseconds, start.value(), end.value());
  return answer(r, milliseconds);
}

Outcome<wire::NoReply> SessionStreams::synchronize_all(CallContext& call, wire::NoPayload) {
  (void)stream_for(0);
  std::vector<cuda::CUstream> all;
  for (const auto& [id, stream] : streams_) all.push_back(stream.owner.get());
  return complete_after(call, all);
}

}  // namespace gpubroker::broker
