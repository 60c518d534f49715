// CUDA graphs through the broker: stream capture happens in the broker on the session's stream
// (the real driver captures; the sim records), so a captured graph never leaves it. The program
// holds session-local ids for graphs and executable graphs.
#include <atomic>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/runtime/runtime_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
namespace cudart = gpubroker::cuda::rt;

namespace {

std::atomic<std::uint64_t> g_next_graph{0x100};

std::uint64_t id_of(const void* handle) { return reinterpret_cast<std::uint64_t>(handle); }

}  // namespace

extern "C" {

int cudaStreamBeginCapture(void* stream, int mode) {
  return call(wire::RequestKind::kStreamBeginCapture,
              bytes_of(wire::CaptureRequest{id_of(stream), static_cast<std::uint64_t>(mode)}));
}

int cudaStreamEndCapture(void* stream, void** graph) {
  if (graph == nullptr) return record(kErrorInvalidValue);
  const std::uint64_t id = g_next_graph.fetch_add(1, std::memory_order_relaxed);
  const Error e = call(wire::RequestKind::kStreamEndCapture, bytes_of(wire::CaptureRequest{id_of(stream), id}));
  *graph = e == kSuccess ? reinterpret_cast<void*>(id) : nullptr;
  return e;
}

int cudaStreamIsCapturing(void* stream, int* status) {
  if (status == nullptr) return record(kErrorInvalidValue);
  ipc::Completion completion;
  const Error e = call(wire::RequestKind::kStreamIsCapturing, bytes_of(wire::HandleRequest{id_of(stream)}), &completion);
  if (e == kSuccess) *status = completion.result_as<std::int32_t>();
  return e;
}

int cudaGraphInstantiate(void** exec, void* graph, unsigned long long /*flags*/) {
  if (exec == nullptr) return record(kErrorInvalidValue);
  const std::uint64_t id = g_next_graph.fetch_add(1, std::memory_order_relaxed);
  const Error e = call(wire::RequestKind::kGraphInstantiate, bytes_of(wire::GraphRequest{id_of(graph), id}));
  *exec = e == kSuccess ? reinterpret_cast<void*>(id) : nullptr;
  return e;
}

int cudaGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
  return cudaGraphInstantiate(exec, graph, flags);
}

int cudaGraphLaunch(void* exec, void* stream) {
  hold_for_host_funcs(id_of(stream));
  return post(wire::RequestKind::kGraphLaunch, bytes_of(wire::GraphRequest{id_of(exec), id_of(stream)}));
}

int cudaGraphExecUpdate(void* exec, void* graph, cudart::cudaGraphExecUpdateResultInfo* info) {
  ipc::Completion completion;
  const Error e = call(wire::RequestKind::kGraphExecUpdate, bytes_of(wire::GraphRequest{id_of(exec), id_of(graph)}),
                       &completion);
  const auto result = completion.result_as<std::int32_t>();
  if (info != nullptr) {
    info->result = static_cast<cudart::cudaGraphExecUpdateResult>(result);
    info->errorNode = nullptr;
    info->errorFromNode = nullptr;
  }
  return e;  // CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE is cudaErrorGraphExecUpdateFailure (910)
}

int cudaGraphDestroy(void* graph) {
  return call(wire::RequestKind::kGraphDestroy, bytes_of(wire::HandleRequest{id_of(graph)}));
}

int cudaGraphExecDestroy(void* exec) {
  return call(wire::RequestKind::kGraphExecDestroy, bytes_of(wire::HandleRequest{id_of(exec)}));
}

int cudaStreamBeginCapture_ptsz(void* stream, int mode) { return cudaStreamBeginCapture(stream, mode); }
int cudaStreamEndCapture_ptsz(void* stream, void** graph) { return cudaStreamEndCapture(stream, graph); }
int cudaStreamIsCapturing_ptsz(void* stream, int* status) { return cudaStreamIsCapturing(stream, status); }
int cudaGraphLaunch_ptsz(void* exec, void* stream) { return cudaGraphLaunch(exec, stream); }

}  // extern "C"
