// Host functions (cudaLaunchHostFunc, cudaStreamAddCallback) run in the client. The broker
// enqueues a notice on the stream; when the stream reaches it, a driver callback hands the
// function's id to the client's waiting kHostFuncWait (or queues it until one comes). The client
// itself holds back later work on that stream until the function has returned, so nothing in the
// driver ever waits for a client, and no client can stall the shared context.
//
// enqueue() and wait() run on the dispatcher thread; ready() on the driver's callback thread.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

#include "broker/call.h"
#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionHostFuncs {
 public:
  explicit SessionHostFuncs(DeviceSession& session);

  // From now on no function is handed to the client: the session is being reclaimed.
  void close();

  // ---- Handlers (rows of area `host_funcs`) ----
  Outcome<wire::NoReply> enqueue(CallContext& call, const wire::HostFuncRequest& request);
  Outcome<std::uint64_t> wait(CallContext& call, wire::NoPayload);

 private:
  static void ready(void* notice);  // a driver host function

  DeviceSession& session_;
  std::mutex lock_;  // the dispatcher and the driver's callback thread
  std::deque<std::uint64_t> ready_;
  std::optional<wire::RequestHeader> waiter_;  // the client's kHostFuncWait, until one is ready
  ipc::ServerSession* server_ = nullptr;
  bool closed_ = false;
};

}  // namespace gpubroker::broker
