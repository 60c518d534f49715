// CUDA graphs through the broker: stream capture happens in the broker on the session's stream
// (the real driver captures; the sim records), so a captured graph never leaves it. The program
// holds session-local ids for graphs and executable graphs.
#include <atomic>
#include <mutex>
#include <unordered_map>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/abi/unsupported.h"
#include "shim/runtime/runtime_state.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
namespace cudart = gpubroker::cuda::rt;

namespace {


std::uint64_t id_of(const void* handle) { return reinterpret_cast<std::uint64_t>(handle); }

// The id of each capture in progress (cudaStreamGetCaptureInfo's id_out), by stream; the default
// stream's handles are one stream.
struct Captures {
  std::mutex lock;
  std::unordered_map<std::uint64_t, unsigned long long> ids;
  unsigned long long next = 1;
};
Captures& captures() {
  static auto* c = new Captures;
  return *c;
}
std::uint64_t capture_key(const void* stream) { return id_of(stream) <= 2 ? 0 : id_of(stream); }

// Every form of cudaStreamGetCaptureInfo. The graph being captured lives in the broker, so the
// outputs that would hand it (or its nodes) to the program are refused while a capture is active.
Error capture_info(void* stream, int* status, unsigned long long* id, void** graph, const void*** dependencies,
                   const void** edges, std::size_t* count) {
  if (status == nullptr) return record(kErrorInvalidValue);
  shim::ReplyOf<wire::RequestKind::kStreamIsCapturing> reply{};
  const Error e = call<wire::RequestKind::kStreamIsCapturing>(wire::HandleRequest{id_of(stream)}, &reply);
  if (e != kSuccess) return e;
  *status = reply;
  if (*status != cudart::cudaStreamCaptureStatusActive) return kSuccess;
  if (graph != nullptr || dependencies != nullptr || edges != nullptr || count != nullptr) {
    gpubroker_log_unsupported_once("cudaStreamGetCaptureInfo asking for the capturing graph or its nodes");
    return record(kErrorNotSupported);
  }
  if (id != nullptr) {
    std::lock_guard guard(captures().lock);
    auto it = captures().ids.find(capture_key(stream));
    *id = it == captures().ids.end() ? 0 : it->second;
  }
  return kSuccess;
}

}  // namespace

extern "C" {

int cudaStreamBeginCapture(void* stream, int mode) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = call<wire::RequestKind::kStreamBeginCapture>(wire::CaptureRequest{id_of(stream), static_cast<std::uint64_t>(mode)});
  if (e == kSuccess) {
    std::lock_guard guard(captures().lock);
    captures().ids[capture_key(stream)] = captures().next++;
  }
  return e;
}

int cudaStreamEndCapture(void* stream, void** graph) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (graph == nullptr) return record(kErrorInvalidValue);
  {
    std::lock_guard guard(captures().lock);
    captures().ids.erase(capture_key(stream));
  }
  const std::uint64_t id = shim::new_object_id();
  const Error e = call<wire::RequestKind::kStreamEndCapture>(wire::CaptureRequest{id_of(stream), id});
  *graph = e == kSuccess ? reinterpret_cast<void*>(id) : nullptr;
  return e;
}

int cudaStreamIsCapturing(void* stream, int* status) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (status == nullptr) return record(kErrorInvalidValue);
  shim::ReplyOf<wire::RequestKind::kStreamIsCapturing> reply{};
  const Error e = call<wire::RequestKind::kStreamIsCapturing>(wire::HandleRequest{id_of(stream)}, &reply);
  if (e == kSuccess) *status = reply;
  return e;
}

int cudaGraphInstantiate(void** exec, void* graph, unsigned long long /*flags*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (exec == nullptr) return record(kErrorInvalidValue);
  const std::uint64_t id = shim::new_object_id();
  const Error e = call<wire::RequestKind::kGraphInstantiate>(wire::GraphRequest{id_of(graph), id});
  *exec = e == kSuccess ? reinterpret_cast<void*>(id) : nullptr;
  return e;
}

int cudaGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return cudaGraphInstantiate(exec, graph, flags);
}

int cudaGraphLaunch(void* exec, void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  hold_for_host_funcs(id_of(stream));
  return post<wire::RequestKind::kGraphLaunch>(wire::GraphRequest{id_of(exec), id_of(stream)});
}

int cudaGraphExecUpdate(void* exec, void* graph, cudart::cudaGraphExecUpdateResultInfo* info) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  shim::ReplyOf<wire::RequestKind::kGraphExecUpdate> reply{};
  const Error e = call<wire::RequestKind::kGraphExecUpdate>(wire::GraphRequest{id_of(exec), id_of(graph)}, &reply);
  const auto result = reply;
  if (info != nullptr) {
    info->result = static_cast<cudart::cudaGraphExecUpdateResult>(result);
    info->errorNode = nullptr;
    info->errorFromNode = nullptr;
  }
  return e;  // CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE is cudaErrorGraphExecUpdateFailure (910)
}

int cudaGraphDestroy(void* graph) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kGraphDestroy>(wire::HandleRequest{id_of(graph)});
}

int cudaGraphExecDestroy(void* exec) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return call<wire::RequestKind::kGraphExecDestroy>(wire::HandleRequest{id_of(exec)});
}

#if GPUBROKER_CUDART_ABI >= 13
int cudaStreamGetCaptureInfo(void* stream, int* status, unsigned long long* id, void** graph,
                             const void*** dependencies, const void** edges, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, edges, count);
}
int cudaStreamGetCaptureInfo_ptsz(void* stream, int* status, unsigned long long* id, void** graph,
                                  const void*** dependencies, const void** edges, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, edges, count);
}
#else
// 12 keeps every generation: the 11.x three-argument form, _v2 (what the 12 headers call
// cudaStreamGetCaptureInfo) and _v3 (with edge data).
int cudaStreamGetCaptureInfo(void* stream, int* status, unsigned long long* id) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, nullptr, nullptr, nullptr, nullptr);
}
int cudaStreamGetCaptureInfo_ptsz(void* stream, int* status, unsigned long long* id) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, nullptr, nullptr, nullptr, nullptr);
}
int cudaStreamGetCaptureInfo_v2(void* stream, int* status, unsigned long long* id, void** graph,
                                const void*** dependencies, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, nullptr, count);
}
int cudaStreamGetCaptureInfo_v2_ptsz(void* stream, int* status, unsigned long long* id, void** graph,
                                     const void*** dependencies, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, nullptr, count);
}
int cudaStreamGetCaptureInfo_v3(void* stream, int* status, unsigned long long* id, void** graph,
                                const void*** dependencies, const void** edges, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, edges, count);
}
int cudaStreamGetCaptureInfo_v3_ptsz(void* stream, int* status, unsigned long long* id, void** graph,
                                     const void*** dependencies, const void** edges, std::size_t* count) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return capture_info(stream, status, id, graph, dependencies, edges, count);
}
#endif

}  // extern "C"
