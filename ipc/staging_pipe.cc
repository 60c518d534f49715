#include "ipc/staging_pipe.h"

namespace gpubroker::ipc {

namespace {
// The peer's position may trail ours by at most a pipe (its own credit) and never lead it.
bool plausible_lag(std::uint64_t ours, std::uint64_t theirs, std::uint64_t capacity) {
  return ours - theirs <= capacity;  // unsigned: a peer ahead of us wraps to a huge lag
}
}  // namespace

PipeView to_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes) {
  auto* data = reinterpret_cast<std::byte*>(segment) + sizeof(wire::StagingSegment);
  return {&segment->to_broker, data, pipe_bytes};
}

PipeView from_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes) {
  auto* data = reinterpret_cast<std::byte*>(segment) + sizeof(wire::StagingSegment) + pipe_bytes;
  return {&segment->from_broker, data, pipe_bytes};
}

Result<std::uint64_t> PipeWriter::wait_for_space(PeerCheck alive, WaitPolicy policy) {
  if (tail_ - head_seen_ < pipe_.capacity) return pipe_.capacity - (tail_ - head_seen_);
  std::atomic_ref head(pipe_.control->head);
  bool implausible = false;
  auto ready = [&] {
    // Pairs with the reader's release store of `head` in PipeReader::read().
    const std::uint64_t seen = head.load(std::memory_order_acquire);
    if (!plausible_lag(tail_, seen, pipe_.capacity)) implausible = true;
    return implausible || tail_ - seen < pipe_.capacity;
  };
  switch (wait_until(bell(pipe_.control->drained), ready, alive, policy)) {
    case WaitResult::kReady: break;
    case WaitResult::kPeerGone: return IpcError{IpcErrc::kPeerGone};
    case WaitResult::kTimedOut: return IpcError{IpcErrc::kTimedOut};
  }
  if (implausible) return IpcError{IpcErrc::kProtocol};
  // Re-read once: `ready` may have seen an older value than the one that satisfied it.
  const std::uint64_t seen = head.load(std::memory_order_acquire);
  if (!plausible_lag(tail_, seen, pipe_.capacity) || seen < head_seen_) {
    return IpcError{IpcErrc::kProtocol};
  }
  head_seen_ = seen;
  return pipe_.capacity - (tail_ - head_seen_);
}

Result<std::uint64_t> PipeReader::wait_for_bytes(PeerCheck alive, WaitPolicy policy) {
  std::atomic_ref tail(pipe_.control->tail);
  // Loops only when a hostile writer moves `tail` back between the wait and the re-read.
  while (tail_seen_ == head_) {
    bool implausible = false;
    auto ready = [&] {
      // Pairs with the writer's release store of `tail` in PipeWriter::write().
      const std::uint64_t seen = tail.load(std::memory_order_acquire);
      if (!plausible_lag(seen, head_, pipe_.capacity)) implausible = true;
      return implausible || seen != head_;
    };
    switch (wait_until(bell(pipe_.control->filled), ready, alive, policy)) {
      case WaitResult::kReady: break;
      case WaitResult::kPeerGone: return IpcError{IpcErrc::kPeerGone};
      case WaitResult::kTimedOut: return IpcError{IpcErrc::kTimedOut};
    }
    const std::uint64_t seen = tail.load(std::memory_order_acquire);
    if (implausible || !plausible_lag(seen, head_, pipe_.capacity)) {
      return IpcError{IpcErrc::kProtocol};
    }
    tail_seen_ = seen;
  }
  return tail_seen_ - head_;
}

}  // namespace gpubroker::ipc
