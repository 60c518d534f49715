#include "broker/device_releases.h"

#include <system_error>

#include "broker/device_context.h"
#include "ipc/log.h"

namespace gpubroker::broker {

DeferredFrees::DeferredFrees(const DeviceContext& context) : context_(context) {
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    ipc::log(ipc::LogLevel::kWarning, "device {}: no thread for deferred frees ({}); cudaFree waits for the device",
             context_.ordinal(), e.what());
  }
}

DeferredFrees::~DeferredFrees() {
  {
    std::lock_guard guard(lock_);
    stopping_ = true;
  }
  work_.notify_all();
  if (thread_.joinable()) thread_.join();
}

DeferredFrees::Ticket DeferredFrees::free_later(cuda::CUdeviceptr pointer, std::uint64_t bytes) {
  std::unique_lock guard(lock_);
  if (!thread_.joinable() || stopping_) {
    guard.unlock();
    release({pointer, bytes});  // waits for the context, as cuMemFree does
    return 0;                   // nothing left to wait for
  }
  queue_.push_back({pointer, bytes});
  pending_bytes_ += bytes;
  const Ticket ticket = ++queued_total_;
  guard.unlock();
  work_.notify_one();
  return ticket;
}

std::uint64_t DeferredFrees::pending_bytes() const {
  std::lock_guard guard(lock_);
  return pending_bytes_;
}

DeferredFrees::Ticket DeferredFrees::released_through() const {
  std::lock_guard guard(lock_);
  return done_total_;
}

void DeferredFrees::wait_until_released() {
  std::unique_lock guard(lock_);
  const Ticket last = queued_total_;
  released_.wait(guard, [&] { return done_total_ >= last; });
}

void DeferredFrees::run() {
  std::unique_lock guard(lock_);
  for (;;) {
    work_.wait(guard, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    const Release next = queue_.front();
    queue_.pop_front();
    guard.unlock();
    release(next);
    guard.lock();
    pending_bytes_ -= next.bytes;
    ++done_total_;
    released_.notify_all();
  }
}

void DeferredFrees::release(const Release& r) const {
  if (const cuda::CUresult result = context_.mem_free(r.pointer); result != cuda::CUDA_SUCCESS) {
    ipc::log(ipc::LogLevel::kWarning, "device {}: cuMemFree of {:#x} ({} bytes) failed: {}", context_.ordinal(), r.pointer, r.bytes,
              static_cast<int>(result));
  }
}

}  // namespace gpubroker::broker
