#include "broker/session_host_funcs.h"

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

struct HostFuncNotice {
  SessionHostFuncs* host_funcs;
  std::atomic<std::uint32_t>* in_flight;  // the session's callbacks_in_flight()
  std::uint64_t id;
};

}  // namespace

SessionHostFuncs::SessionHostFuncs(DeviceSession& session) : session_(session) {}

void SessionHostFuncs::close() {
  std::lock_guard lock(lock_);
  closed_ = true;
}

Outcome<wire::NoReply> SessionHostFuncs::enqueue(CallContext& call, const wire::HostFuncRequest& r) {
  auto stream = session_.streams().stream_for(r.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
  if (context->stream_is_capturing(handle, &capturing) != cuda::CUDA_SUCCESS ||
      capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
    return CallError{cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED};
  }
  {
    std::lock_guard lock(lock_);
    server_ = &call.session;
  }
  auto work = session_.timeline().begin(call, stream.value(), r.stream);  // before the notice: it may throw
  auto* notice = new HostFuncNotice{this, &session_.callbacks_in_flight(), r.id};
  session_.callbacks_in_flight().fetch_add(1, std::memory_order_relaxed);
  const cuda::CUresult e = context->launch_host_func(handle, ready, notice);
  work.finish(e, "host function", r.id);
  if (e != cuda::CUDA_SUCCESS) {
    delete notice;
    session_.callbacks_in_flight().fetch_sub(1, std::memory_order_relaxed);
  }
  return answer(e);
}

// The next function whose turn has come, now or when its notice runs.
Outcome<std::uint64_t> SessionHostFuncs::wait(CallContext& call, wire::NoPayload) {
  std::lock_guard lock(lock_);
  if (waiter_.has_value()) return CallError{cuda::CUDA_ERROR_INVALID_VALUE};  // one waiter per session
  if (!ready_.empty()) {
    const std::uint64_t id = ready_.front();
    ready_.pop_front();
    return id;
  }
  waiter_ = call.header();
  server_ = &call.session;
  return kCompletesLater;
}

void SessionHostFuncs::ready(void* context) {
  auto* notice = static_cast<HostFuncNotice*>(context);
  SessionHostFuncs& self = *notice->host_funcs;
  std::atomic<std::uint32_t>* in_flight = notice->in_flight;
  const std::uint64_t id = notice->id;
  delete notice;
  {
    std::lock_guard lock(self.lock_);
    if (self.closed_) {
      // The session is going: nobody will run it.
    } else if (self.waiter_.has_value()) {
      self.server_->complete(*self.waiter_, cuda::CUDA_SUCCESS, wire::bytes_of(id));
      self.waiter_.reset();
    } else {
      self.ready_.push_back(id);
    }
  }
  // Pairs with the acquire load in DeviceSession::quiesce(): after this the session may go.
  in_flight->fetch_sub(1, std::memory_order_release);
}

}  // namespace gpubroker::broker
