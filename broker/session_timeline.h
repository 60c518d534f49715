// The device side of a traced session (gpu-broker-run --trace; docs/trace.md). A client that
// traces hands its trace file to the broker at the handshake (wire::kHelloTraceFile); from then
// on every piece of device work the session's handlers queue (a kernel, a copy, a memset, a graph
// launch, a host function's notice, a GEMM) is bracketed on its stream by two timing events, and
// once both have passed, the work's device start and duration, in the client's clock
// (CLOCK_MONOTONIC), are appended to that file as a trace::Library::kDevice record:
//
//   auto work = session_.timeline().begin(stream.value(), m.stream);
//   const CUresult r = context->memset_d8_async(...);
//   work.finish(r, "memset", m.bytes);
//
// Device time becomes host time through an anchor per context: an event recorded on a stream of
// the timeline's own, with nothing before it, and waited for at once, so that its device time is
// the host's clock then (to within the wait, microseconds). An anchor serves the work begun in
// the second after it is made; cuEventElapsedTime from it to each event gives the rest.
//
// The broker trusts the file no more than the rest of what a client sends: the listener accepts
// only a regular file open for appending, which the client could write itself, and what goes
// into it is the session's own work. Work on a stream being captured is not timed (it does not
// run; its graph's launches are).
//
// Dispatcher thread only. With no file, begin() costs one branch and finish() nothing.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/call.h"
#include "broker/owned.h"
#include "broker/session_streams.h"
#include "gpubroker/trace/format.h"
#include "ipc/system.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionTimeline {
 public:
  explicit SessionTimeline(DeviceSession& session) : session_(session) {}
  SessionTimeline(const SessionTimeline&) = delete;
  SessionTimeline& operator=(const SessionTimeline&) = delete;
  // Waits for the timed work still pending, writes it and a "session end" record. The session
  // has quiesced by then (its destructor ran first), so the wait is for nothing queued anew.
  ~SessionTimeline();

  // Starts tracing the session's device work into `file` (ServerSession::take_trace_file).
  void open(ipc::UniqueFd file);
  [[nodiscard]] bool on() const { return file_.get() >= 0; }

  struct Anchor;
  // One piece of work being queued: begun before the handler queues it, finished after with what
  // the queueing returned. One dropped unfinished times nothing.
  class Work {
   public:
    Work() = default;
    Work(Work&& other) noexcept;
    Work& operator=(Work&&) = delete;
    Work(const Work&) = delete;
    ~Work() {
      if (timeline_ != nullptr) abandon();
    }

    // `what` is a trace name of the work (format.h: "kernel", "memcpy HtoD", ...), a string
    // literal; `args` its words. A failed queueing records nothing.
    void finish(cuda::CUresult queued, const char* what, std::uint64_t a = 0, std::uint64_t b = 0,
                std::uint64_t c = 0) {
      if (timeline_ != nullptr) finish_timed(queued, what, a, b, c);
    }
    // A kernel: names the function in the file the first time it runs.
    void finish_kernel(cuda::CUresult queued, std::uint64_t function, const std::string& name,
                       const std::uint32_t (&grid)[3], const std::uint32_t (&block)[3]) {
      if (timeline_ != nullptr) finish_kernel_timed(queued, function, name, grid, block);
    }

   private:
    friend class SessionTimeline;
    void abandon();
    void finish_timed(cuda::CUresult queued, const char* what, std::uint64_t a, std::uint64_t b, std::uint64_t c);
    void finish_kernel_timed(cuda::CUresult queued, std::uint64_t function, const std::string& name,
                             const std::uint32_t (&grid)[3], const std::uint32_t (&block)[3]);
    SessionTimeline* timeline_ = nullptr;  // null: not timed
    const DeviceContext* context_ = nullptr;
    cuda::CUstream stream_ = nullptr;
    std::uint64_t stream_id_ = 0;
    std::uint16_t kind_ = 0;
    cuda::CUevent start_ = nullptr;
    std::shared_ptr<const Anchor> anchor_;
  };
  [[nodiscard]] Work begin(const CallContext& call, const SessionStream& stream, std::uint64_t stream_id) {
    return on() ? begin_timed(call, stream, stream_id) : Work();
  }

  // Writes the records of timed work that has finished on the device. After each request.
  void collect();

  struct Anchor {
    OwnedEvent event;
    std::uint64_t host_ns;  // CLOCK_MONOTONIC when the event passed
    std::uint64_t made_ns;
  };

 private:
  struct PerContext {
    std::optional<OwnedStream> idle;     // where anchors are recorded: never any work before them
    std::vector<OwnedEvent> events;      // every timing event made, for their release
    std::vector<cuda::CUevent> free;     // of `events`, not in use
    std::shared_ptr<const Anchor> anchor;
  };
  struct Pending {
    const DeviceContext* context;
    cuda::CUevent start, end;
    std::shared_ptr<const Anchor> anchor;
    trace::Record record;
  };

  PerContext& per(const DeviceContext& context) { return contexts_[&context]; }
  Work begin_timed(const CallContext& call, const SessionStream& stream, std::uint64_t stream_id);
  cuda::CUevent take_event(const DeviceContext& context);
  // The context's anchor, made anew when it is older than kAnchorLifetimeNs; null when the driver
  // cannot make one (the work is then not timed).
  std::shared_ptr<const Anchor> anchor(const DeviceContext& context);
  void finish(Work& work, cuda::CUresult queued, const trace::Record& record);
  void name(std::uint64_t function, const std::string& name);
  // Turns finished (or, with `wait`, every) pending work into records.
  void settle(bool wait);
  void append(const void* bytes, std::size_t count);
  void write_out();

  DeviceSession& session_;
  ipc::UniqueFd file_;
  std::unordered_map<const DeviceContext*, PerContext> contexts_;
  std::deque<Pending> pending_;
  std::unordered_set<std::uint64_t> named_;  // function ids whose name is in the file
  std::vector<std::byte> out_;               // records not yet written
};

}  // namespace gpubroker::broker
