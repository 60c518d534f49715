#include "ipc/staging_pipe.h"

namespace gpubroker::ipc {

PipeView to_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes) {
  auto* data = reinterpret_cast<std::byte*>(segment) + sizeof(wire::StagingSegment);
  return {&segment->to_broker, data, pipe_bytes};
}

PipeView from_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes) {
  auto* data = reinterpret_cast<std::byte*>(segment) + sizeof(wire::StagingSegment) + pipe_bytes;
  return {&segment->from_broker, data, pipe_bytes};
}

void PipeWriter::publish(std::uint64_t position) {
  published_ = position;
  // Pairs with the reader's acquire load of `tail` in wait_for_bytes().
  std::atomic_ref(pipe_.control->tail).store(position, std::memory_order_release);
  ring(bell(pipe_.control->filled));
}

void PipeReader::release(std::uint64_t position) {
  released_ = position;
  // Pairs with the writer's acquire load of `head` in wait_for_space().
  std::atomic_ref(pipe_.control->head).store(position, std::memory_order_release);
  ring(bell(pipe_.control->drained));
}

Result<std::uint64_t> PipeWriter::wait_for_space(PeerCheck alive, WaitPolicy policy) {
  std::atomic_ref head(pipe_.control->head);
  // The consumer can be no further than what we published, and never behind what it reported.
  auto plausible = [&](std::uint64_t seen) { return published_ - seen <= pipe_.capacity && seen >= head_seen_; };
  // Loops only when a hostile reader moves `head` back between the wait and the re-read.
  while (tail_ - head_seen_ >= pipe_.capacity) {
    bool implausible = false;
    auto ready = [&] {
      // Pairs with the reader's release store of `head` in PipeReader::release().
      const std::uint64_t seen = head.load(std::memory_order_acquire);
      if (!plausible(seen)) implausible = true;
      return implausible || tail_ - seen < pipe_.capacity;
    };
    switch (wait_until(bell(pipe_.control->drained), ready, alive, policy)) {
      case WaitResult::kReady: break;
      case WaitResult::kPeerGone: return IpcError{IpcErrc::kPeerGone};
      case WaitResult::kTimedOut: return IpcError{IpcErrc::kTimedOut};
    }
    const std::uint64_t seen = head.load(std::memory_order_acquire);
    if (implausible || !plausible(seen)) return IpcError{IpcErrc::kProtocol};
    head_seen_ = seen;
  }
  return pipe_.capacity - (tail_ - head_seen_);
}

Result<std::uint64_t> PipeReader::wait_for_bytes(PeerCheck alive, WaitPolicy policy) {
  std::atomic_ref tail(pipe_.control->tail);
  // The producer can be at most a pipe ahead of what we gave back, and never behind what it
  // reported before.
  auto plausible = [&](std::uint64_t seen) { return seen - released_ <= pipe_.capacity && seen >= tail_seen_; };
  // Loops only when a hostile writer moves `tail` back between the wait and the re-read.
  while (tail_seen_ == head_) {
    bool implausible = false;
    auto ready = [&] {
      // Pairs with the writer's release store of `tail` in PipeWriter::publish().
      const std::uint64_t seen = tail.load(std::memory_order_acquire);
      if (!plausible(seen)) implausible = true;
      return implausible || seen != head_;
    };
    switch (wait_until(bell(pipe_.control->filled), ready, alive, policy)) {
      case WaitResult::kReady: break;
      case WaitResult::kPeerGone: return IpcError{IpcErrc::kPeerGone};
      case WaitResult::kTimedOut: return IpcError{IpcErrc::kTimedOut};
    }
    const std::uint64_t seen = tail.load(std::memory_order_acquire);
    if (implausible || !plausible(seen)) return IpcError{IpcErrc::kProtocol};
    tail_seen_ = seen;
  }
  return tail_seen_ - head_;
}

}  // namespace gpubroker::ipc
