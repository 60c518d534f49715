#include "broker/session_timeline.h"

#include <unistd.h>

#include <cstring>

#include "broker/session.h"
#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_SUCCESS;

constexpr std::uint64_t kAnchorLifetimeNs = 1'000'000'000;
constexpr int kAnchorTries = 3;
constexpr std::uint64_t kAnchorGoodWaitNs = 50'000;  // an anchor good to 25 us
constexpr std::size_t kWriteBytes = 64 * 1024;  // records are written in pieces of about this size
// Timed work waiting for its end event: past this many, new work is not timed until some has
// finished (a session queueing without end does not make the broker hold events without end).
constexpr std::size_t kMaxPending = 16 * 1024;

std::uint64_t now_ns() { return static_cast<std::uint64_t>(ipc::monotonic_ns()); }

trace::Record device_record(std::uint16_t kind, std::uint64_t stream, const char* what, std::uint64_t a,
                            std::uint64_t b, std::uint64_t c) {
  trace::Record r{};
  r.kind = kind;
  r.library = trace::Library::kDevice;
  r.where = trace::Where::kBroker;
  std::strncpy(r.function, what, sizeof r.function - 1);
  r.args[0] = stream;
  r.args[1] = a;
  r.args[2] = b;
  r.args[3] = c;
  return r;
}

}  // namespace

SessionTimeline::Work::Work(Work&& other) noexcept
    : timeline_(std::exchange(other.timeline_, nullptr)), context_(other.context_), stream_(other.stream_),
      stream_id_(other.stream_id_), kind_(other.kind_), start_(other.start_), anchor_(std::move(other.anchor_)) {}

// Dropped unfinished (the handler returned before it queued anything): the start event goes back.
// In a destructor, so it must not throw: an event that cannot go back on the free list stays
// unused until the session ends (its context's list still owns it).
void SessionTimeline::Work::abandon() {
  SessionTimeline& timeline = *std::exchange(timeline_, nullptr);
  try {
    timeline.per(*context_).free.push_back(start_);
  } catch (const std::bad_alloc&) {
  }
}

void SessionTimeline::Work::finish_timed(cuda::CUresult queued, const char* what, std::uint64_t a, std::uint64_t b,
                                         std::uint64_t c) {
  SessionTimeline& timeline = *std::exchange(timeline_, nullptr);
  timeline.finish(*this, queued, device_record(kind_, stream_id_, what, a, b, c));
}

void SessionTimeline::Work::finish_kernel_timed(cuda::CUresult queued, std::uint64_t function, const std::string& name,
                                                const std::uint32_t (&grid)[3], const std::uint32_t (&block)[3]) {
  if (queued == CUDA_SUCCESS) timeline_->name(function, name);
  finish_timed(queued, "kernel", function, trace::pack_dims(grid), trace::pack_dims(block));
}

SessionTimeline::~SessionTimeline() {
  if (!on()) return;
  try {
    settle(true);
    trace::Record end = device_record(0, 0, "session end", 0, 0, 0);
    end.start_ns = now_ns();
    append(&end, sizeof end);
    write_out();
  } catch (const std::bad_alloc&) {  // the trace loses its tail; the broker goes on
    ipc::log(ipc::LogLevel::kWarning, "a session's trace lost its last records: out of memory");
  }
}

void SessionTimeline::open(ipc::UniqueFd file) { file_ = std::move(file); }

SessionTimeline::Work SessionTimeline::begin_timed(const CallContext& call, const SessionStream& stream,
                                                   std::uint64_t stream_id) {
  Work work;
  if (pending_.size() >= kMaxPending) return work;
  const DeviceContext& context = *stream.context;
  cuda::CUstreamCaptureStatus capturing = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
  if (context.stream_is_capturing(stream.handle, &capturing) != CUDA_SUCCESS ||
      capturing != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
    return work;
  }
  std::shared_ptr<const Anchor> anchor = this->anchor(context);
  if (anchor == nullptr) return work;
  cuda::CUevent start = take_event(context);
  if (start == nullptr) return work;
  if (context.event_record(start, stream.handle) != CUDA_SUCCESS) {
    per(context).free.push_back(start);
    return work;
  }
  work.timeline_ = this;
  work.context_ = &context;
  work.stream_ = stream.handle;
  work.stream_id_ = stream_id;
  work.kind_ = call.header().kind;
  work.start_ = start;
  work.anchor_ = std::move(anchor);
  return work;
}

cuda::CUevent SessionTimeline::take_event(const DeviceContext& context) {
  PerContext& p = per(context);
  if (!p.free.empty()) {
    const cuda::CUevent event = p.free.back();
    p.free.pop_back();
    return event;
  }
  cuda::CUevent event = nullptr;
  if (context.event_create(&event, cuda::CU_EVENT_DEFAULT) != CUDA_SUCCESS) return nullptr;
  p.events.emplace_back(event, DestroyEvent{&context}, nullptr);
  return event;
}

std::shared_ptr<const SessionTimeline::Anchor> SessionTimeline::anchor(const DeviceContext& context) {
  PerContext& p = per(context);
  const std::uint64_t now = now_ns();
  if (p.anchor != nullptr && now - p.anchor->made_ns < kAnchorLifetimeNs) return p.anchor;
  if (!p.idle) {
    cuda::CUstream stream = nullptr;
    if (context.stream_create_with_priority(&stream, cuda::CU_STREAM_NON_BLOCKING, 0) != CUDA_SUCCESS) return nullptr;
    p.idle.emplace(stream, DestroyStream{&context}, nullptr);
  }
  cuda::CUevent event = nullptr;
  if (context.event_create(&event, cuda::CU_EVENT_DEFAULT) != CUDA_SUCCESS) return nullptr;
  OwnedEvent owned(event, DestroyEvent{&context}, nullptr);
  // The event passes between the two clock readings; their middle is its time to within half the
  // wait. The wait is microseconds unless the device put the idle stream behind other work (a
  // hardware queue it shares): then the event is recorded again, up to kAnchorTries times, and
  // the last record is the anchor (its host time the middle of its own wait).
  std::uint64_t host_ns = 0;
  for (int attempt = 0; attempt < kAnchorTries; ++attempt) {
    const std::uint64_t before = now_ns();
    if (context.event_record(event, p.idle->get()) != CUDA_SUCCESS || context.event_synchronize(event) != CUDA_SUCCESS) {
      return nullptr;
    }
    const std::uint64_t wait = now_ns() - before;
    host_ns = before + wait / 2;
    if (wait <= kAnchorGoodWaitNs) break;
  }
  p.anchor = std::make_shared<const Anchor>(Anchor{std::move(owned), host_ns, now_ns()});
  return p.anchor;
}

void SessionTimeline::finish(Work& work, cuda::CUresult queued, const trace::Record& record) {
  const DeviceContext& context = *work.context_;
  cuda::CUevent end = queued == CUDA_SUCCESS ? take_event(context) : nullptr;
  if (end == nullptr || context.event_record(end, work.stream_) != CUDA_SUCCESS) {
    per(context).free.push_back(work.start_);
    if (end != nullptr) per(context).free.push_back(end);
    return;
  }
  pending_.push_back(Pending{&context, work.start_, end, std::move(work.anchor_), record});
}

void SessionTimeline::name(std::uint64_t function, const std::string& name) {
  if (!named_.insert(function).second) return;
  const std::size_t length = std::min<std::size_t>(name.size(), trace::kMaxNameBytes);
  trace::Record r{};
  r.library = trace::Library::kName;
  std::strncpy(r.function, "kernel", sizeof r.function - 1);
  r.args[0] = function;
  r.args[1] = length;
  r.start_ns = now_ns();
  append(&r, sizeof r);
  std::vector<char> padded(trace::padded_name_bytes(length), '\0');
  std::memcpy(padded.data(), name.data(), length);
  append(padded.data(), padded.size());
}

void SessionTimeline::collect() {
  if (pending_.empty()) return;
  settle(false);
}

// In the order the work was queued: work on one stream finishes in that order, and work queued
// on another stream after an unfinished one waits for the next collect.
void SessionTimeline::settle(bool wait) {
  while (!pending_.empty()) {
    Pending& p = pending_.front();
    const DeviceContext& context = *p.context;
    cuda::CUresult done = wait ? context.event_synchronize(p.end) : context.event_query(p.end);
    if (done == cuda::CUDA_ERROR_NOT_READY) break;
    trace::Record& r = p.record;
    // The start from the anchor, the duration from the start (float milliseconds lose precision
    // as they grow: the duration is not a difference of two large ones).
    float to_start = 0, lasted = 0;
    if (done == CUDA_SUCCESS) done = context.event_elapsed_time(&to_start, p.anchor->event.get(), p.start);
    if (done == CUDA_SUCCESS) done = context.event_elapsed_time(&lasted, p.start, p.end);
    if (done == CUDA_SUCCESS) {
      const auto offset_ns = static_cast<std::int64_t>(static_cast<double>(to_start) * 1e6);
      r.start_ns = static_cast<std::uint64_t>(static_cast<std::int64_t>(p.anchor->host_ns) + offset_ns);
      r.duration_ns = lasted > 0 ? static_cast<std::uint64_t>(static_cast<double>(lasted) * 1e6) : 0;
    } else {
      r.start_ns = now_ns();  // a fault: when it was seen, with no duration
      r.result = static_cast<std::int32_t>(done);
    }
    append(&r, sizeof r);
    PerContext& per_context = per(context);
    per_context.free.push_back(p.start);
    per_context.free.push_back(p.end);
    pending_.pop_front();
    if (out_.size() >= kWriteBytes) write_out();
  }
}

void SessionTimeline::append(const void* bytes, std::size_t count) {
  const auto* b = static_cast<const std::byte*>(bytes);
  out_.insert(out_.end(), b, b + count);
}

// Whole records in one write each time, to the client's file opened O_APPEND (its own records
// interleave between writes, never within one). A file that fails (full, or cut short by the
// client) stops the tracing of this session, never the session.
void SessionTimeline::write_out() {
  if (!on()) out_.clear();
  if (out_.empty()) return;
  const ssize_t written = ::write(file_.get(), out_.data(), out_.size());
  if (written != static_cast<ssize_t>(out_.size())) {
    ipc::log(ipc::LogLevel::kWarning, "a session's trace file took {} of {} bytes; its device work is no longer traced",
             written < 0 ? 0 : written, out_.size());
    file_ = ipc::UniqueFd();
  }
  out_.clear();
}

}  // namespace gpubroker::broker
