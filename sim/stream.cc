#include "sim/stream.h"

#include <utility>

namespace gpubroker::sim {
namespace {
constexpr cuda::CUresult kIllegalState = 401;  // CUDA_ERROR_ILLEGAL_STATE
constexpr cuda::CUresult kCaptureWrongThread = 908;  // CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD
}  // namespace

std::shared_ptr<Stream> Stream::start(unsigned flags, int priority) {
  auto stream = std::make_shared<Stream>(flags, priority);
  std::thread([stream] { stream->run(); }).detach();
  return stream;
}

void Stream::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    // A kernel running in a submitting thread (submit_kernel) counts as the one in progress.
    work_available_.wait(lock, [&] { return !inline_running_ && (!queue_.empty() || retired_); });
    if (queue_.empty()) return;  // retired and drained
    Operation operation = std::move(queue_.front());
    queue_.pop_front();
    const bool faulted = error_ != cuda::CUDA_SUCCESS;
    if (const auto* record = std::get_if<EventRecordOp>(&operation)) {
      // Completed together with the stream's count, under its lock: once the event reports the
      // stream's work done, a query of the stream agrees (and the other way round), fault included.
      record->event->complete(record->generation, error_);
      ++completed_;
      work_done_.notify_all();
      continue;
    }
    lock.unlock();
    cuda::CUresult result = execute(operation, faulted);
    lock.lock();
    if (result != cuda::CUDA_SUCCESS && error_ == cuda::CUDA_SUCCESS) error_ = result;
    ++completed_;
    work_done_.notify_all();
  }
}

cuda::CUresult Stream::submit_locked(std::vector<Operation>& operations) {
  if (capture_status_ == cuda::CU_STREAM_CAPTURE_STATUS_INVALIDATED)
    return cuda::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  if (capture_status_ == cuda::CU_STREAM_CAPTURE_STATUS_ACTIVE) {
    for (Operation& operation : operations) capture_->nodes.push_back(std::move(operation));
    return cuda::CUDA_SUCCESS;
  }
  if (error_ != cuda::CUDA_SUCCESS) return error_;
  for (Operation& operation : operations) {
    if (auto* record = std::get_if<EventRecordOp>(&operation)) record->generation = record->event->begin_record();
    if (auto* wait = std::get_if<EventWaitOp>(&operation)) wait->generation = wait->event->latest_record();
    queue_.push_back(std::move(operation));
    ++enqueued_;
  }
  return cuda::CUDA_SUCCESS;
}

cuda::CUresult Stream::submit(std::vector<Operation> operations) {
  cuda::CUresult result;
  {
    std::lock_guard lock(mutex_);
    result = submit_locked(operations);
  }
  work_available_.notify_one();
  return result;
}

cuda::CUresult Stream::submit(Operation operation) {
  if (std::holds_alternative<KernelOp>(operation)) return submit_kernel(std::move(operation));
  std::vector<Operation> one;
  one.push_back(std::move(operation));
  return submit(std::move(one));
}

// A GPU takes a launch from the host in a doorbell write; handing each one to the worker thread
// instead costs a wake-up and a context switch, which would make the sim's launch rate a measure
// of the scheduler. So a kernel launched on an idle stream (nothing queued or running, not
// capturing, not faulted) runs at once in the launching thread, which is as ordered as the queue:
// whatever comes next waits for it. A kernel that waits for other streams' work (FoundKernel)
// would hold the launching thread, and whoever must launch that work: it always goes to the worker. Copies always go to the worker, so that they stay
// asynchronous to the broker, which overlaps them with its staging.
cuda::CUresult Stream::submit_kernel(Operation operation) {
  {
    std::unique_lock lock(mutex_);
    const bool idle = queue_.empty() && completed_ == enqueued_ && !inline_running_ &&
                      !std::get<KernelOp>(operation).waits_for_other_streams;
    if (!idle || capture_status_ != cuda::CU_STREAM_CAPTURE_STATUS_NONE || error_ != cuda::CUDA_SUCCESS || retired_) {
      std::vector<Operation> one;
      one.push_back(std::move(operation));
      const cuda::CUresult result = submit_locked(one);
      lock.unlock();
      work_available_.notify_one();
      return result;
    }
    inline_running_ = true;
    ++enqueued_;
  }
  const cuda::CUresult result = execute(operation, false);
  bool queued_behind = false;
  {
    std::lock_guard lock(mutex_);
    if (result != cuda::CUDA_SUCCESS && error_ == cuda::CUDA_SUCCESS) error_ = result;
    ++completed_;
    inline_running_ = false;
    queued_behind = !queue_.empty() || retired_;
  }
  // Only a worker with something to do is woken: waking it for nothing would cost the context
  // switch this path exists to save.
  if (queued_behind) work_available_.notify_one();
  work_done_.notify_all();  // no system call unless someone waits
  return cuda::CUDA_SUCCESS;
}

cuda::CUresult Stream::query() {
  std::lock_guard lock(mutex_);
  if (capture_status_ != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
    capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    return cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  if (error_ != cuda::CUDA_SUCCESS) return error_;
  return completed_ < enqueued_ ? cuda::CUDA_ERROR_NOT_READY : cuda::CUDA_SUCCESS;
}

cuda::CUresult Stream::synchronize() {
  {
    std::lock_guard lock(mutex_);
    if (capture_status_ != cuda::CU_STREAM_CAPTURE_STATUS_NONE) {
      capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_INVALIDATED;
      return cuda::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
  }
  return wait_idle();
}

cuda::CUresult Stream::wait_idle() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = enqueued_;
  work_done_.wait(lock, [&] { return completed_ >= target; });
  return error_;
}

cuda::CUresult Stream::begin_capture(cuda::CUstreamCaptureMode mode) {
  if (mode < cuda::CU_STREAM_CAPTURE_MODE_GLOBAL || mode > cuda::CU_STREAM_CAPTURE_MODE_RELAXED)
    return cuda::CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(mutex_);
  if (capture_status_ != cuda::CU_STREAM_CAPTURE_STATUS_NONE) return kIllegalState;
  capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_ACTIVE;
  capture_mode_ = mode;
  capture_thread_ = std::this_thread::get_id();
  capture_ = std::make_shared<Graph>();
  return cuda::CUDA_SUCCESS;
}

cuda::CUresult Stream::end_capture(std::shared_ptr<Graph>* graph) {
  std::lock_guard lock(mutex_);
  if (capture_status_ == cuda::CU_STREAM_CAPTURE_STATUS_NONE) return kIllegalState;
  if (capture_mode_ != cuda::CU_STREAM_CAPTURE_MODE_RELAXED && capture_thread_ != std::this_thread::get_id())
    return kCaptureWrongThread;
  const bool invalidated = capture_status_ == cuda::CU_STREAM_CAPTURE_STATUS_INVALIDATED;
  capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
  std::shared_ptr<Graph> captured = std::exchange(capture_, nullptr);
  if (invalidated) return cuda::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  *graph = std::move(captured);
  return cuda::CUDA_SUCCESS;
}

cuda::CUstreamCaptureStatus Stream::capture_status() {
  std::lock_guard lock(mutex_);
  return capture_status_;
}

void Stream::retire() {
  {
    std::lock_guard lock(mutex_);
    retired_ = true;
    capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
    capture_ = nullptr;
  }
  work_available_.notify_one();
}

}  // namespace gpubroker::sim
