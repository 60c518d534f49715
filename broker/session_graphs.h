// A session's stream captures, graphs and executable graphs (ids the client chooses).
//
// A graph outlives the calls that built it, so the checks those calls passed do not hold for its
// launches: a memset captured into a graph, replayed after its buffer was freed and the address
// given to another session, would write into that session's memory. So when a capture ends, the
// broker reads the graph's memset and memcpy nodes back from the driver and keeps the device
// ranges they touch, each with the serial of the session's memory that holds it
// (DeviceSession::memory_serial). A launch is refused (CUDA_ERROR_INVALID_VALUE) when any of them
// is no longer that same memory of the session: freed, unmapped, or freed and allocated again at
// the same address. The check runs only when the session has let go of memory since the exec's
// last launch (the session's memory epoch), so a decode loop's launches cost one comparison.
// Kernel nodes are opaque, as their pointers are in native CUDA; the isolation of contexts covers
// them. A graph with nodes of a type the broker never captures (child graphs, memory nodes, ...)
// is refused.
//
// Every capture runs in the driver's relaxed mode, whatever mode the client asked for: in the
// global and thread-local modes the driver refuses "unsafe" calls of other threads, and every
// session's calls run in the broker's one process, so one session's capture would otherwise fail
// another session's cuMemAlloc.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "broker/call.h"
#include "broker/owned.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionGraphs {
 public:
  explicit SessionGraphs(DeviceSession& session);

  // ---- Handlers (rows of area `graphs`) ----
  Outcome<wire::NoReply> begin_capture(CallContext& call, const wire::CaptureRequest& request);
  Outcome<wire::NoReply> end_capture(CallContext& call, const wire::CaptureRequest& request);
  Outcome<std::int32_t> is_capturing(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> instantiate(CallContext& call, const wire::GraphRequest& request);
  Outcome<wire::NoReply> launch(CallContext& call, const wire::GraphRequest& request);
  Outcome<std::int32_t> update(CallContext& call, const wire::GraphRequest& request);
  Outcome<wire::NoReply> destroy_graph(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> destroy_exec(CallContext& call, const wire::HandleRequest& request);

 private:
  // A device range a memset or memcpy node touches, and the serial of the memory it was in.
  struct NodeRange {
    std::uint64_t pointer;
    std::uint64_t bytes;
    std::uint64_t serial;
  };
  using Ranges = std::shared_ptr<const std::vector<NodeRange>>;
  // A graph, or an executable graph, and the context of the stream it was captured on, where
  // every call on it runs.
  struct Graph {
    OwnedGraph owner;
    const DeviceContext* context;
    Ranges ranges;
  };
  struct Exec {
    OwnedGraphExec owner;
    const DeviceContext* context;
    Ranges ranges;
    std::uint64_t checked_epoch;  // the session's memory epoch at which `ranges` last held
  };
  static constexpr std::uint64_t kNeverChecked = ~0ull;
  Lookup<Graph*> graph_for(std::uint64_t id);
  Lookup<Exec*> exec_for(std::uint64_t id);
  // The ranges of a just-captured graph's memset and memcpy nodes, or the error the capture fails with.
  Lookup<Ranges> ranges_of(const DeviceContext& context, cuda::CUgraph graph) const;
  // Appends `bytes` at `pointer` (none when empty); false when the session holds no such memory.
  bool add_range(std::vector<NodeRange>& ranges, std::uint64_t pointer, std::uint64_t bytes) const;

  DeviceSession& session_;
  std::unordered_map<std::uint64_t, Graph> graphs_;
  std::unordered_map<std::uint64_t, Exec> execs_;  // destroyed before the graphs
};

}  // namespace gpubroker::broker
