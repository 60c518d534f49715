// A session's stream captures, graphs and executable graphs (ids the client chooses).
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <unordered_map>

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
  // A graph, or an executable graph, and the context of the stream it was captured on, where
  // every call on it runs.
  template <class Owner>
  struct InContext {
    Owner owner;
    const DeviceContext* context;
  };
  using Graph = InContext<OwnedGraph>;
  using Exec = InContext<OwnedGraphExec>;
  Lookup<const Graph*> graph_for(std::uint64_t id) const;
  Lookup<const Exec*> exec_for(std::uint64_t id) const;

  DeviceSession& session_;
  std::unordered_map<std::uint64_t, Graph> graphs_;
  std::unordered_map<std::uint64_t, Exec> execs_;  // destroyed before the graphs
};

}  // namespace gpubroker::broker
