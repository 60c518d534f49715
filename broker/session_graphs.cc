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

Lookup<SessionGraphs::Graph*> SessionGraphs::graph_for(std::uint64_t id) {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return &it->second;
}

Lookup<SessionGraphs::Exec*> SessionGraphs::exec_for(std::uint64_t id) {
  auto it = execs_.find(id);
  if (it == execs_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return &it->second;
}

namespace {

// Bytes from the first byte to one past the last of `depth` slices of `height` rows of `width`
// bytes, rows `pitch` apart and slices `slice_rows` rows apart; false where that does not fit.
bool extent(std::uint64_t width, std::uint64_t height, std::uint64_t depth, std::uint64_t pitch,
            std::uint64_t slice_rows, std::uint64_t& bytes) {
  if (width == 0 || height == 0 || depth == 0) {
    bytes = 0;
    return true;
  }
  std::uint64_t rows = 0, span = 0;
  return !__builtin_mul_overflow(depth - 1, slice_rows, &rows) && !__builtin_add_overflow(rows, height - 1, &rows) &&
         !__builtin_mul_overflow(rows, pitch, &span) && !__builtin_add_overflow(span, width, &bytes);
}

// The first byte of a copy's side: `x` bytes into row `y` of slice `z`.
bool origin(std::uint64_t base, std::uint64_t x, std::uint64_t y, std::uint64_t z, std::uint64_t pitch,
            std::uint64_t slice_rows, std::uint64_t& at) {
  std::uint64_t rows = 0, offset = 0;
  return !__builtin_mul_overflow(z, slice_rows, &rows) && !__builtin_add_overflow(rows, y, &rows) &&
         !__builtin_mul_overflow(rows, pitch, &offset) && !__builtin_add_overflow(offset, x, &offset) &&
         !__builtin_add_overflow(base, offset, &at);
}

}  // namespace

bool SessionGraphs::add_range(std::vector<NodeRange>& ranges, std::uint64_t pointer, std::uint64_t bytes) const {
  if (bytes == 0) return true;
  const std::uint64_t serial = session_.memory_serial(pointer, bytes);
  if (serial == 0) return false;
  ranges.push_back(NodeRange{pointer, bytes, serial});
  return true;
}

Lookup<SessionGraphs::Ranges> SessionGraphs::ranges_of(const DeviceContext& context, cuda::CUgraph graph) const {
  std::size_t count = 0;
  if (CUresult r = context.graph_get_nodes(graph, nullptr, &count); r != CUDA_SUCCESS) return CallError{r};
  std::vector<cuda::CUgraphNode> nodes(count);
  if (CUresult r = context.graph_get_nodes(graph, nodes.data(), &count); r != CUDA_SUCCESS) return CallError{r};
  nodes.resize(std::min(count, nodes.size()));
  auto ranges = std::make_shared<std::vector<NodeRange>>();
  for (cuda::CUgraphNode node : nodes) {
    cuda::CUgraphNodeType type = 0;
    if (CUresult r = context.graph_node_get_type(node, &type); r != CUDA_SUCCESS) return CallError{r};
    switch (type) {
      case cuda::CU_GRAPH_NODE_TYPE_MEMSET: {
        cuda::CUDA_MEMSET_NODE_PARAMS m{};
        if (CUresult r = context.graph_memset_node_get_params(node, &m); r != CUDA_SUCCESS) return CallError{r};
        std::uint64_t row = 0, bytes = 0;
        if (__builtin_mul_overflow(static_cast<std::uint64_t>(m.width), m.elementSize, &row) ||
            !extent(row, m.height, 1, m.pitch, m.height, bytes) || !add_range(*ranges, m.dst, bytes)) {
          return CallError{CUDA_ERROR_INVALID_VALUE};
        }
        break;
      }
      case cuda::CU_GRAPH_NODE_TYPE_MEMCPY: {
        cuda::CUDA_MEMCPY3D c{};
        if (CUresult r = context.graph_memcpy_node_get_params(node, &c); r != CUDA_SUCCESS) return CallError{r};
        // Host sides are the broker's own memory (the session's host arena or its pipes).
        auto side = [&](cuda::CUmemorytype type, cuda::CUdeviceptr base, std::size_t x, std::size_t y, std::size_t z,
                        std::size_t pitch, std::size_t height) {
          if (type == cuda::CU_MEMORYTYPE_HOST) return true;
          std::uint64_t at = 0, bytes = 0;
          return type == cuda::CU_MEMORYTYPE_DEVICE && origin(base, x, y, z, pitch, height, at) &&
                 extent(c.WidthInBytes, c.Height, c.Depth, pitch, height, bytes) && add_range(*ranges, at, bytes);
        };
        if (!side(c.srcMemoryType, c.srcDevice, c.srcXInBytes, c.srcY, c.srcZ, c.srcPitch, c.srcHeight) ||
            !side(c.dstMemoryType, c.dstDevice, c.dstXInBytes, c.dstY, c.dstZ, c.dstPitch, c.dstHeight)) {
          return CallError{CUDA_ERROR_INVALID_VALUE};
        }
        break;
      }
      case cuda::CU_GRAPH_NODE_TYPE_KERNEL:  // opaque: the context's isolation covers them
      case cuda::CU_GRAPH_NODE_TYPE_HOST:
      case cuda::CU_GRAPH_NODE_TYPE_EMPTY:
      case cuda::CU_GRAPH_NODE_TYPE_WAIT_EVENT:
      case cuda::CU_GRAPH_NODE_TYPE_EVENT_RECORD:
        break;
      default:
        return CallError{cuda::CUDA_ERROR_NOT_SUPPORTED};
    }
  }
  return Ranges(std::move(ranges));
}

Outcome<wire::NoReply> SessionGraphs::begin_capture(CallContext&, const wire::CaptureRequest& c) {
  if (c.graph_or_mode > cuda::CU_STREAM_CAPTURE_MODE_RELAXED) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto stream = session_.streams().stream_for(c.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  return answer(context->stream_begin_capture(handle, cuda::CU_STREAM_CAPTURE_MODE_RELAXED));
}

Outcome<wire::NoReply> SessionGraphs::end_capture(CallContext&, const wire::CaptureRequest& c) {
  if (graphs_.contains(c.graph_or_mode)) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto stream = session_.streams().stream_for(c.stream);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  cuda::CUgraph graph = nullptr;
  if (CUresult r = context->stream_end_capture(handle, &graph); r != CUDA_SUCCESS) return CallError{r};
  if (graph != nullptr) {
    OwnedGraph owner(graph, DestroyGraph{context}, &session_.counters().graphs);
    auto ranges = ranges_of(*context, graph);
    if (!ranges) return ranges.error();  // the graph goes with its owner
    graphs_.emplace(c.graph_or_mode, Graph{std::move(owner), context, std::move(ranges.value())});
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
  execs_.emplace(g.second, Exec{OwnedGraphExec(exec, DestroyGraphExec{context}, &session_.counters().graphs), context,
                                graph.value()->ranges, kNeverChecked});
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionGraphs::launch(CallContext& call, const wire::GraphRequest& g) {
  auto found = exec_for(g.first);
  if (!found) return found.error();
  Exec& exec = *found.value();
  auto stream = session_.streams().stream_for(g.second);
  if (!stream) return stream.error();
  const auto [handle, context] = stream.value();
  if (exec.context != context) return CallError{CUDA_ERROR_INVALID_HANDLE};  // another device's stream
  if (exec.checked_epoch != session_.memory_epoch()) {
    for (const NodeRange& range : *exec.ranges) {
      if (session_.memory_serial(range.pointer, range.bytes) != range.serial) return CallError{CUDA_ERROR_INVALID_VALUE};
    }
    exec.checked_epoch = session_.memory_epoch();
  }
  auto work = session_.timeline().begin(call, stream.value(), g.second);
  const CUresult r = context->graph_launch(exec.owner.get(), handle);
  work.finish(r, "graph", g.first);
  return answer(r);
}

// The update's result travels with a failure too: it says why the graph could not be updated.
Outcome<std::int32_t> SessionGraphs::update(CallContext&, const wire::GraphRequest& g) {
  auto exec = exec_for(g.first);
  if (!exec) return exec.error();
  auto graph = graph_for(g.second);
  if (!graph) return graph.error();
  cuda::CUgraphExecUpdateResultInfo info{};
  const CUresult r = exec.value()->context->graph_exec_update(exec.value()->owner.get(), graph.value()->owner.get(), &info);
  if (r == CUDA_SUCCESS) {  // the exec now runs the graph's nodes: it names their memory
    exec.value()->ranges = graph.value()->ranges;
    exec.value()->checked_epoch = kNeverChecked;
  }
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
