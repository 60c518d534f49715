// Streams, events and graphs of the driver API: the process's objects (shim/client/operations.h),
// so a stream or event either API made is the other's too, and a graph the runtime captured can
// be launched by cuGraphLaunch.
#include "shim/driver/driver_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::drv;
using cuda::CUevent;
using cuda::CUstream;
using gpubroker::shim::Connection;
namespace ops = gpubroker::shim::ops;

namespace {

std::uint64_t id_of(const void* handle) { return reinterpret_cast<std::uint64_t>(handle); }

// A request on the current context's device.
template <wire::RequestKind Kind>
CUresult on_context(const shim::PayloadOf<Kind>& payload, shim::ReplyOf<Kind>* reply = nullptr) {
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return r;
  return ops::request<Kind>(*c, payload, reply);
}

template <wire::RequestKind Kind>
CUresult posted_on_context(const shim::PayloadOf<Kind>& payload) {
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return r;
  return ops::post<Kind>(*c, payload);
}

constexpr unsigned kStreamNonBlocking = 0x1;  // CU_STREAM_NON_BLOCKING

}  // namespace

extern "C" {

// ---- streams --------------------------------------------------------------------------------

CUresult cuStreamCreateWithPriority(CUstream* stream, unsigned flags, int priority) {
  GPUBROKER_DRIVER_ENTRY();
  if (stream == nullptr || (flags & ~kStreamNonBlocking) != 0) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t id = 0;
  const CUresult r = ops::create_stream(*c, flags, priority, id);
  if (r == kSuccess) *stream = reinterpret_cast<CUstream>(id);
  return result(r);
}

CUresult cuStreamCreate(CUstream* stream, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  return cuStreamCreateWithPriority(stream, flags, 0);
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kStreamDestroy>(wire::HandleRequest{stream_id(stream)}));
}

CUresult cuStreamSynchronize(CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kStreamSynchronize>(wire::HandleRequest{stream_id(stream)}));
}

CUresult cuStreamQuery(CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  if (shim::host_funcs_pending(reinterpret_cast<std::uint64_t>(stream))) return result(kNotReady);
  return result(on_context<wire::RequestKind::kStreamQuery>(wire::HandleRequest{stream_id(stream)}));
}

CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned /*flags*/) {
  GPUBROKER_DRIVER_ENTRY();
  return result(
      posted_on_context<wire::RequestKind::kStreamWaitEvent>(wire::EventStreamRequest{id_of(event), stream_id(stream)}));
}

CUresult cuStreamGetFlags(CUstream stream, unsigned* flags) {
  GPUBROKER_DRIVER_ENTRY();
  if (flags == nullptr) return result(kInvalidValue);
  std::uint32_t reply = 0;
  const CUresult r = on_context<wire::RequestKind::kStreamGetFlags>(wire::HandleRequest{stream_id(stream)}, &reply);
  if (r == kSuccess) *flags = reply;
  return result(r);
}

CUresult cuStreamGetPriority(CUstream stream, int* priority) {
  GPUBROKER_DRIVER_ENTRY();
  if (priority == nullptr) return result(kInvalidValue);
  std::int32_t reply = 0;
  const CUresult r = on_context<wire::RequestKind::kStreamGetPriority>(wire::HandleRequest{stream_id(stream)}, &reply);
  if (r == kSuccess) *priority = reply;
  return result(r);
}

// Host functions run in this process, on its callback thread (shim/client/host_funcs.cc), shared
// with the runtime's cudaLaunchHostFunc.
CUresult cuLaunchHostFunc(CUstream stream, shim::HostFunction function, void* data) {
  GPUBROKER_DRIVER_ENTRY();
  if (function == nullptr) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  return result(shim::launch_host_func(*c, reinterpret_cast<std::uint64_t>(stream), function, data));
}

CUresult cuStreamAddCallback(CUstream stream, shim::StreamCallback callback, void* data, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if (callback == nullptr || flags != 0) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  return result(shim::add_stream_callback(*c, reinterpret_cast<std::uint64_t>(stream), callback, data));
}

// ---- events ---------------------------------------------------------------------------------

CUresult cuEventCreate(CUevent* event, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if (event == nullptr) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t id = 0;
  const CUresult r = ops::create_event(*c, flags, id);
  if (r == kSuccess) *event = reinterpret_cast<CUevent>(id);
  return result(r);
}

CUresult cuEventDestroy_v2(CUevent event) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kEventDestroy>(wire::HandleRequest{id_of(event)}));
}

CUresult cuEventRecord(CUevent event, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return result(posted_on_context<wire::RequestKind::kEventRecord>(wire::EventStreamRequest{id_of(event), stream_id(stream)}));
}

CUresult cuEventRecordWithFlags(CUevent event, CUstream stream, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  return result(posted_on_context<wire::RequestKind::kEventRecordWithFlags>(
      wire::EventRecordRequest{id_of(event), stream_id(stream), flags, 0}));
}

CUresult cuEventSynchronize(CUevent event) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kEventSynchronize>(wire::HandleRequest{id_of(event)}));
}

CUresult cuEventQuery(CUevent event) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kEventQuery>(wire::HandleRequest{id_of(event)}));
}

CUresult cuEventElapsedTime(float* milliseconds, CUevent start, CUevent end) {
  GPUBROKER_DRIVER_ENTRY();
  if (milliseconds == nullptr) return result(kInvalidValue);
  float reply = 0;
  const CUresult r = on_context<wire::RequestKind::kEventElapsedTime>(wire::EventPairRequest{id_of(start), id_of(end)}, &reply);
  if (r == kSuccess) *milliseconds = reply;
  return result(r);
}

CUresult cuEventElapsedTime_v2(float* milliseconds, CUevent start, CUevent end) {
  GPUBROKER_DRIVER_ENTRY();
  return cuEventElapsedTime(milliseconds, start, end);
}

// ---- graphs (made by stream capture, through either API) ------------------------------------

CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kStreamBeginCapture>(
      wire::CaptureRequest{stream_id(stream), static_cast<std::uint64_t>(mode)}));
}

CUresult cuStreamEndCapture(CUstream stream, cuda::CUgraph* graph) {
  GPUBROKER_DRIVER_ENTRY();
  if (graph == nullptr) return result(kInvalidValue);
  const std::uint64_t id = shim::new_object_id();
  const CUresult r = on_context<wire::RequestKind::kStreamEndCapture>(wire::CaptureRequest{stream_id(stream), id});
  *graph = r == kSuccess ? reinterpret_cast<cuda::CUgraph>(id) : nullptr;
  return result(r);
}

CUresult cuStreamIsCapturing(CUstream stream, int* status) {
  GPUBROKER_DRIVER_ENTRY();
  if (status == nullptr) return result(kInvalidValue);
  std::int32_t reply = 0;
  const CUresult r = on_context<wire::RequestKind::kStreamIsCapturing>(wire::HandleRequest{stream_id(stream)}, &reply);
  if (r == kSuccess) *status = reply;
  return result(r);
}

CUresult cuGraphInstantiateWithFlags(cuda::CUgraphExec* exec, cuda::CUgraph graph, unsigned long long /*flags*/) {
  GPUBROKER_DRIVER_ENTRY();
  if (exec == nullptr) return result(kInvalidValue);
  const std::uint64_t id = shim::new_object_id();
  const CUresult r = on_context<wire::RequestKind::kGraphInstantiate>(wire::GraphRequest{id_of(graph), id});
  *exec = r == kSuccess ? reinterpret_cast<cuda::CUgraphExec>(id) : nullptr;
  return result(r);
}

CUresult cuGraphLaunch(cuda::CUgraphExec exec, CUstream stream) {
  GPUBROKER_DRIVER_ENTRY();
  return result(posted_on_context<wire::RequestKind::kGraphLaunch>(wire::GraphRequest{id_of(exec), stream_id(stream)}));
}

CUresult cuGraphExecDestroy(cuda::CUgraphExec exec) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kGraphExecDestroy>(wire::HandleRequest{id_of(exec)}));
}

CUresult cuGraphDestroy(cuda::CUgraph graph) {
  GPUBROKER_DRIVER_ENTRY();
  return result(on_context<wire::RequestKind::kGraphDestroy>(wire::HandleRequest{id_of(graph)}));
}

}  // extern "C"
