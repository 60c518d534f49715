// Host functions (cudaLaunchHostFunc, cudaStreamAddCallback, cuLaunchHostFunc,
// cuStreamAddCallback), one set per process for every shim. The function runs in this process, on
// the process's one callback thread, when its stream reaches it: the broker enqueues a notice on the stream and
// hands the id to the callback thread's waiting kHostFuncWait. Work submitted to that stream
// afterwards is held back here, in the submitting thread, until the function has returned
// (hold_for_host_funcs), so the device never waits for a client and one client's slow callback
// cannot stall the context every session shares. The callback thread starts with the first host
// function of the process (again in a forked child); a program without host functions has none.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "shim/client/operations.h"

namespace gpubroker::shim {

namespace {

struct Pending {
  HostFunction host = nullptr;
  StreamCallback callback = nullptr;  // the stream-callback form, when host is null
  std::uint64_t stream = 0;
  void* data = nullptr;
};

struct HostFuncs {
  std::mutex lock;
  std::condition_variable returned;
  std::unordered_map<std::uint64_t, Pending> pending;  // enqueued, not yet returned
  std::unordered_map<std::uint64_t, unsigned> per_stream;  // pending count by stream key
  std::atomic<unsigned> total{0};  // all pending: the fast path of hold_for_host_funcs
  std::uint64_t next_id = 1;
  pid_t thread_pid = 0;  // the process whose callback thread runs
};

// The session's default stream stands for handles 0, cudaStreamLegacy and cudaStreamPerThread.
std::uint64_t stream_key(std::uint64_t stream) { return stream <= 2 ? 0 : stream; }

void forget(HostFuncs& hf, std::uint64_t id) {
  auto it = hf.pending.find(id);
  if (it == hf.pending.end()) return;
  const std::uint64_t key = stream_key(it->second.stream);
  if (--hf.per_stream[key] == 0) hf.per_stream.erase(key);
  hf.pending.erase(it);
  hf.total.fetch_sub(1, std::memory_order_release);
  hf.returned.notify_all();
}

// The broker is gone: nothing pending will ever run. Release whoever holds for them (their next
// call fails with the lost connection anyway).
void forget_all(HostFuncs& hf) {
  std::lock_guard guard(hf.lock);
  hf.pending.clear();
  hf.per_stream.clear();
  hf.total.store(0, std::memory_order_release);
  hf.thread_pid = 0;
  hf.returned.notify_all();
}

HostFuncs& host_funcs() {
  static auto* state = new HostFuncs;  // never destroyed: the detached thread may outlive main
  return *state;
}

void run_host_funcs(Connection* connection) {
  HostFuncs& hf = host_funcs();
  for (;;) {
    auto reply = shim::call<wire::RequestKind::kHostFuncWait>(connection->session(), {});
    // The broker is gone (or refused the wait): no function will come any more.
    if (!reply || reply.value().status != 0) return forget_all(hf);
    const std::uint64_t id = reply.value().reply;
    Pending p;
    {
      std::lock_guard guard(hf.lock);
      auto it = hf.pending.find(id);
      if (it == hf.pending.end()) continue;  // not one of ours: ignore it
      p = it->second;
    }
    if (p.host != nullptr) {
      p.host(p.data);
    } else {
      p.callback(reinterpret_cast<void*>(p.stream), 0, p.data);
    }
    std::lock_guard guard(hf.lock);
    forget(hf, id);
  }
}

int enqueue(Connection& c, const Pending& p) {
  HostFuncs& hf = host_funcs();
  std::uint64_t id = 0;
  {
    std::lock_guard guard(hf.lock);
    id = hf.next_id++;
    hf.pending[id] = p;
    ++hf.per_stream[stream_key(p.stream)];
    hf.total.fetch_add(1, std::memory_order_relaxed);
    if (hf.thread_pid != ::getpid()) {
      hf.thread_pid = ::getpid();
      std::thread(run_host_funcs, &c).detach();
    }
  }
  const int status = ops::request<wire::RequestKind::kHostFuncEnqueue>(c, wire::HostFuncRequest{p.stream, id});
  if (status != 0) {
    std::lock_guard guard(hf.lock);
    forget(hf, id);
  }
  return status;
}

}  // namespace

int launch_host_func(Connection& c, std::uint64_t stream, HostFunction function, void* data) {
  return enqueue(c, Pending{function, nullptr, stream, data});
}

int add_stream_callback(Connection& c, std::uint64_t stream, StreamCallback callback, void* data) {
  return enqueue(c, Pending{nullptr, callback, stream, data});
}

void hold_for_host_funcs(std::uint64_t stream) {
  HostFuncs& hf = host_funcs();
  if (hf.total.load(std::memory_order_acquire) == 0) return;
  std::unique_lock guard(hf.lock);
  hf.returned.wait(guard, [&] { return !hf.per_stream.contains(stream_key(stream)); });
}

void hold_for_all_host_funcs() {
  HostFuncs& hf = host_funcs();
  if (hf.total.load(std::memory_order_acquire) == 0) return;
  std::unique_lock guard(hf.lock);
  hf.returned.wait(guard, [&] { return hf.pending.empty(); });
}

bool host_funcs_pending(std::uint64_t stream) {
  HostFuncs& hf = host_funcs();
  if (hf.total.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard guard(hf.lock);
  return hf.per_stream.contains(stream_key(stream));
}

}  // namespace gpubroker::shim
