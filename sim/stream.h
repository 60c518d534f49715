// A sim stream: operations executed in order by one worker thread per stream, and stream capture.
// A kernel launched on an idle stream runs in the launching thread instead (see submit_kernel).
//
// Each Stream owns a detached worker thread that pops operations from its queue and executes
// them one at a time; the thread holds a reference to the Stream, so a destroyed stream finishes
// its queued work (as cuStreamDestroy documents) and then the thread ends. While capturing,
// submitted operations are appended to the capture's Graph instead of being queued.
//
// Errors: an operation that fails (a kernel implementation returning non-zero) faults the
// stream; later queued work is skipped (event records still complete), and query, synchronize and
// later submissions report that error for as long as the stream lives (sticky per stream).
//
// Threads: every member may be called from any thread at once. One mutex per stream guards the
// queue, the counts and the capture state; it is never held while an operation executes.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "sim/operations.h"

namespace gpubroker::sim {

// A captured or built graph: its nodes in the order they were captured; replay runs them in that
// order on one stream.
struct Graph {
  std::vector<Operation> nodes;
};

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  // Starts the worker. Throws std::system_error if no thread can be created.
  static std::shared_ptr<Stream> start(unsigned flags, int priority);

  [[nodiscard]] unsigned flags() const { return flags_; }
  [[nodiscard]] int priority() const { return priority_; }

  // Queues (or, while capturing, records) the operations, in order. Event records and waits get
  // their generations here, at enqueue time. Errors: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED after
  // the capture was invalidated, the stream's sticky error.
  [[nodiscard]] cuda::CUresult submit(std::vector<Operation> operations);
  [[nodiscard]] cuda::CUresult submit(Operation operation);

  // cuStreamQuery / cuStreamSynchronize. On a capturing stream both invalidate the capture and
  // return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED.
  [[nodiscard]] cuda::CUresult query();
  [[nodiscard]] cuda::CUresult synchronize();
  // Waits for the work queued so far, capturing or not (cuCtxSynchronize, cuMemFree).
  [[nodiscard]] cuda::CUresult wait_idle();

  [[nodiscard]] cuda::CUresult begin_capture(cuda::CUstreamCaptureMode mode);
  // The captured graph, or the error (INVALIDATED, WRONG_THREAD, ILLEGAL_STATE when not capturing).
  [[nodiscard]] cuda::CUresult end_capture(std::shared_ptr<Graph>* graph);
  [[nodiscard]] cuda::CUstreamCaptureStatus capture_status();

  // cuStreamDestroy: the worker ends once the queued work is done.
  void retire();

  Stream(unsigned flags, int priority) : flags_(flags), priority_(priority) {}

 private:
  void run();
  cuda::CUresult submit_locked(std::vector<Operation>& operations);
  cuda::CUresult submit_kernel(Operation operation);

  const unsigned flags_;
  const int priority_;

  std::mutex mutex_;
  std::condition_variable work_available_;  // notified by submit() and retire(), waited by run()
  std::condition_variable work_done_;       // notified by run() after each operation
  std::deque<Operation> queue_;
  std::uint64_t enqueued_ = 0;
  std::uint64_t completed_ = 0;
  cuda::CUresult error_ = cuda::CUDA_SUCCESS;
  bool retired_ = false;
  bool inline_running_ = false;  // a kernel runs in a submitting thread (submit_kernel)

  cuda::CUstreamCaptureStatus capture_status_ = cuda::CU_STREAM_CAPTURE_STATUS_NONE;
  cuda::CUstreamCaptureMode capture_mode_ = cuda::CU_STREAM_CAPTURE_MODE_GLOBAL;
  std::thread::id capture_thread_;
  std::shared_ptr<Graph> capture_;
};

}  // namespace gpubroker::sim
