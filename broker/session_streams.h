// A session's streams and events, and the completion of requests that wait for device work.
//
// Stream and event ids are the client's (it chooses them, so creation costs no round trip); ids
// 0, 1 and 2 name the session's own default stream of the current device, which is created on
// first use so that one session's default stream never serializes another's. Every driver stream
// is non-blocking; the legacy default stream's contract is kept within the session and the device
// (join_legacy), never through the context's NULL stream, which every session shares. A stream
// or event is of the device that was current when it was made; work on it runs in that device's
// context (SessionStream::context).
//
// Dispatcher thread only, except where a function says otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/call.h"
#include "broker/owned.h"

namespace gpubroker::broker {

class DeviceSession;

// A session stream as the driver knows it: the stream, and the context it was made in, where
// every call on it runs.
struct SessionStream {
  cuda::CUstream handle;
  const DeviceContext* context;
};

class SessionStreams {
 public:
  explicit SessionStreams(DeviceSession& session);

  // The driver stream of a session stream id, joined to the others as the legacy default stream
  // requires.
  Lookup<SessionStream> stream_for(std::uint64_t id);
  // The driver stream of a session stream id on `device`, as it stands: no legacy join, nothing
  // made (the timeline's look at where a cuBLAS handle's work goes); nullopt for none.
  [[nodiscard]] std::optional<SessionStream> find_stream(std::uint64_t id, std::uint32_t device) const;
  // An event and the context it was made in.
  struct SessionEvent {
    cuda::CUevent handle;
    const DeviceContext* context;
  };
  Lookup<SessionEvent> event_for(std::uint64_t id) const;

  // Completes `call` once `streams` (all of `context`) have finished their current work: at once
  // where they have, else from that context's completion poller. The answer of a call that uses it.
  Outcome<wire::NoReply> complete_after(CallContext& call, const DeviceContext& context,
                                        std::span<const cuda::CUstream> streams);
  Outcome<wire::NoReply> complete_after(CallContext& call, const SessionStream& stream);

  // Waits for the work queued on every stream of the session (the session's end).
  void synchronize_everything();

  // ---- Handlers (rows of area `streams`) ----
  Outcome<wire::NoReply> create_stream(CallContext& call, const wire::StreamCreateRequest& request);
  Outcome<wire::NoReply> destroy_stream(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> synchronize_stream(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> query_stream(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> wait_event(CallContext& call, const wire::EventStreamRequest& request);
  Outcome<std::uint32_t> stream_flags(CallContext& call, const wire::HandleRequest& request);
  Outcome<std::int32_t> stream_priority(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> create_event(CallContext& call, const wire::EventCreateRequest& request);
  Outcome<wire::NoReply> destroy_event(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> record_event(CallContext& call, const wire::EventStreamRequest& request);
  Outcome<wire::NoReply> record_event_with_flags(CallContext& call, const wire::EventRecordRequest& request);
  Outcome<wire::NoReply> synchronize_event(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> query_event(CallContext& call, const wire::HandleRequest& request);
  Outcome<float> elapsed_time(CallContext& call, const wire::EventPairRequest& request);
  Outcome<wire::NoReply> synchronize_all(CallContext& call, wire::NoPayload);

  // Completes `call` once this session's streams on `context` (not being captured) are done.
  Outcome<wire::NoReply> synchronize_for_free(CallContext& call, const DeviceContext& context);

 private:
  struct Stream {
    OwnedStream owner;
    std::uint32_t flags;  // as the client created it (cudaStreamNonBlocking or not)
    const DeviceContext* context;
  };
  struct Event {
    OwnedEvent owner;
    const DeviceContext* context;
  };
  // A new driver stream in `context`, owned and counted.
  Lookup<OwnedStream> make_stream(const DeviceContext& context, int priority, bool counted);
  cuda::CUresult join_legacy(std::uint64_t key, const SessionStream& stream);
  void forget_blocking(std::uint64_t key);
  [[nodiscard]] static bool any_capturing(const DeviceContext& context, std::span<const cuda::CUstream> streams);
  [[nodiscard]] std::vector<cuda::CUstream> streams_on(const DeviceContext& context, bool capturing_too) const;

  DeviceSession& session_;
  // Members are destroyed bottom-up: the events before the streams they were recorded on.
  std::unordered_map<std::uint64_t, Stream> streams_;  // default streams under default_key(device)
  std::unordered_map<std::uint64_t, Event> events_;
  // The legacy default stream's joins and the event-wait stream, per device.
  struct BlockingStreams {
    std::unordered_set<std::uint64_t> streams;           // created without cudaStreamNonBlocking
    std::unordered_set<std::uint64_t> ahead_of_default;  // with work the default stream has not joined
    std::unordered_set<std::uint64_t> behind_default;    // not yet joined to the default stream's work
    std::unordered_map<std::uint64_t, OwnedEvent> events;  // one per stream that joins another
  };
  struct PerDevice {
    BlockingStreams blocking;
    std::optional<OwnedStream> sync_stream;  // where event waits are turned into callbacks
  };
  std::vector<PerDevice> per_device_;
};

}  // namespace gpubroker::broker
