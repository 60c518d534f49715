// One direction of the staging area: a byte ring that carries payloads of any size (pageable
// copies, large parameter blocks, fatbins) in fixed chunks, so that the producer fills chunk i+1
// while the consumer drains chunk i. Free space is the producer's credit; the consumer returns it
// chunk by chunk.
//
// Each side keeps its own position privately and reads the peer's shared word only to learn how
// far the peer got, checking that it is plausible (never more than one pipe ahead or behind). An
// implausible word is a protocol violation, reported as IpcErrc::kProtocol.
//
// Not thread-safe: one writer thread and one reader thread at a time per direction (the client
// serializes its threads with a lock around each transfer).
#pragma once

#include <cstdint>
#include <span>

#include "gpubroker/wire/segments.h"
#include "ipc/doorbell.h"
#include "ipc/result.h"

namespace gpubroker::ipc {

// The unit in which bytes are published and credit is returned.
inline constexpr std::uint64_t kStagingChunkBytes = 256 * 1024;

// Direction of a pipe; each segment has one of each.
struct PipeView {
  wire::PipeControl* control;
  std::byte* data;
  std::uint64_t capacity;  // power of two, a multiple of kStagingChunkBytes
};

PipeView to_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes);
PipeView from_broker_pipe(wire::StagingSegment* segment, std::uint64_t pipe_bytes);

// A liveness test for the peer, called at most once per kLivenessSlice while waiting.
struct PeerCheck {
  bool (*alive)(const void* context);
  const void* context;
  bool operator()() const { return alive(context); }
};

class PipeWriter {
 public:
  explicit PipeWriter(PipeView pipe) : pipe_(pipe) {}

  // Streams `bytes` into the pipe: `fill(destination)` is called for each contiguous piece and
  // must write all of it. Blocks while the pipe is full.
  template <class Fill>
  Result<void> write(std::uint64_t bytes, Fill&& fill, PeerCheck alive, WaitPolicy policy);

 private:
  Result<std::uint64_t> wait_for_space(PeerCheck alive, WaitPolicy policy);

  PipeView pipe_;
  std::uint64_t tail_ = 0;       // private producer position
  std::uint64_t head_seen_ = 0;  // last consumer position read and checked
};

class PipeReader {
 public:
  explicit PipeReader(PipeView pipe) : pipe_(pipe) {}

  // Takes `bytes` out of the pipe: `drain(source)` is called for each contiguous piece. Blocks
  // while the pipe is empty.
  template <class Drain>
  Result<void> read(std::uint64_t bytes, Drain&& drain, PeerCheck alive, WaitPolicy policy);

 private:
  Result<std::uint64_t> wait_for_bytes(PeerCheck alive, WaitPolicy policy);

  PipeView pipe_;
  std::uint64_t head_ = 0;       // private consumer position
  std::uint64_t tail_seen_ = 0;  // last producer position read and checked
};

template <class Fill>
Result<void> PipeWriter::write(std::uint64_t bytes, Fill&& fill, PeerCheck alive, WaitPolicy policy) {
  while (bytes > 0) {
    auto space = wait_for_space(alive, policy);
    if (!space) return space.error();
    const std::uint64_t offset = tail_ & (pipe_.capacity - 1);
    std::uint64_t piece = std::min({bytes, space.value(), pipe_.capacity - offset});
    piece = std::min(piece, kStagingChunkBytes - (offset % kStagingChunkBytes));
    fill(std::span<std::byte>(pipe_.data + offset, piece));
    tail_ += piece;
    bytes -= piece;
    // Pairs with the reader's acquire load of `tail` in wait_for_bytes().
    std::atomic_ref(pipe_.control->tail).store(tail_, std::memory_order_release);
    ring(bell(pipe_.control->filled));
  }
  return boost::outcome_v2::success();
}

template <class Drain>
Result<void> PipeReader::read(std::uint64_t bytes, Drain&& drain, PeerCheck alive, WaitPolicy policy) {
  while (bytes > 0) {
    auto available = wait_for_bytes(alive, policy);
    if (!available) return available.error();
    const std::uint64_t offset = head_ & (pipe_.capacity - 1);
    std::uint64_t piece = std::min({bytes, available.value(), pipe_.capacity - offset});
    piece = std::min(piece, kStagingChunkBytes - (offset % kStagingChunkBytes));
    drain(std::span<const std::byte>(pipe_.data + offset, piece));
    head_ += piece;
    bytes -= piece;
    // Pairs with the writer's acquire load of `head` in wait_for_space().
    std::atomic_ref(pipe_.control->head).store(head_, std::memory_order_release);
    ring(bell(pipe_.control->drained));
  }
  return boost::outcome_v2::success();
}

}  // namespace gpubroker::ipc
