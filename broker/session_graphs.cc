#include "broker/session_graphs.h"

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

}  // namespace

SessionGraphs::SessionGraphs(DeviceSession& session) : session_(session) {}

Lookup<const SessionGraphs::Graph*> SessionGraphs::graph_for(std::uint64_t id) const {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return &it->second;
}

Lookup<const SessionGraphs::Exec*> SessionGraphs::exec_for(std::uint64_t id) const {
  auto it = execs_.find(id);
  if (it == execs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return &it->second;
}

Outcome<wire::NoReply> SessionGraphs::begin_capture(CallContext&, const wire::CaptureRequest& c) {
  auto stream = session_.streams().stream_for(c.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  return answer(context->stream_begin_capture(handle, static_cast<cuda::CUstreamCaptureMode>(c.graph_or_mode)));
}

Outcome<wire::NoReply> SessionGraphs::end_capture(CallContext&, const wire::CaptureRequest& c) {
  if (graphs_.contains(c.graph_or_mode)) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto stream = session_.streams().stream_for(c.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  cuda::CUgraph graph = nullptr;
  if (CUresult r = context->stream_end_capture(handle, &graph); r != CUDA_SUCCESS) return CallError{r};
  if (graph != nullptr) {
    graphs_.emplace(c.graph_or_mode,
                    Graph{OwnedGraph(graph, DestroyGraph{context}, &session_.counters().graphs), context});
  }
  return wire::NoReply{};
}

Outcome<std::int32_t> SessionGraphs::is_capturing(CallContext&, const wire::HandleRequest& request) {
  auto stream = session_.streams().stream_for(request.handle);
  if (!stream) return stream.error();
  cuda::CUstreamCaptureStatus status = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
  const CUresult r = stream.value().context->stream_is_capturing(stream.value().handle, &status);
  return answer(r, static_cast<std::int32_t>(status));
}

Outcome<wire::NoReply> SessionGraphs::instantiate(CallContext&, const wire::GraphRequest& g) {
  if (execs_.contains(g.second)) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto graph = graph_for(g.first);
  if (!graph) return graph.error();
  const DeviceContext* context = graph.value()->context;
  cuda::CUgraphExec exec = nullptr;
  if (CUresult r = context->graph_instantiate(&exec, graph.value()->owner.get(), 0); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  execs_.emplace(g.second, Exec{OwnedGraphExec(exec, DestroyGraphExec{context}, &session_.counters().graphs), context});
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionGraphs::launch(CallContext&, const wire::GraphRequest& g) {
  auto exec = exec_for(g.first);
  if (!exec) return exec.error();
  auto stream = session_.streams().stream_for(g.second);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  if (exec.value()->context != context) return CallError{CUDA_ERROR_INVALID_HANDLE};  // another device's stream
  return answer(context->graph_launch(exec.value()->owner.get(), handle));
}

// The update's result travels with a failure too: it says why the graph could not be updated.
Outcome<std::int32_t> SessionGraphs::update(CallContext&, const wire::GraphRequest& g) {
  auto exec = exec_for(g.first);
  if (!exec) return exec.error();
  auto graph = graph_for(g.second);
  if (!graph) return graph.error();
  cuda::CUgraphExecUpdateResultInfo info{};
  const CUresult r = exec.value()->context->graph_exec_update(exec.value()->owner.get(), graph.value()->owner.get(), &info);
  return answer(r, static_cast<std::int32_t>(info.result));
}

Outcome<wire::NoReply> SessionGraphs::destroy_graph(CallContext&, const wire::HandleRequest& request) {
  auto it = graphs_.find(request.handle);
  if (it == graphs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const int r = it->second.owner.reset();
  graphs_.erase(it);
  return answer(r);
}

Outcome<wire::NoReply> SessionGraphs::destroy_exec(CallContext&, const wire::HandleRequest& request) {
  auto it = execs_.find(request.handle);
  if (it == execs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const int r = it->second.owner.reset();
  execs_.erase(it);
  return answer(r);
}

}  // namespace gpubroker::broker
