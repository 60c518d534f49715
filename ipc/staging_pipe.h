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

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>

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
  // must write all of it before it returns. Blocks while the pipe is full.
  template <class Fill>
  Result<void> write(std::uint64_t bytes, Fill&& fill, PeerCheck alive, WaitPolicy policy) {
    return write_windowed(
        bytes, 0, [&](std::span<std::byte> piece, std::uint64_t) { fill(piece); }, [](std::uint64_t) {}, alive,
        policy);
  }

  // Like write(), for a filler that completes asynchronously (a DMA into the pipe): fill(piece,
  // index) starts filling piece `index`; settle(index) must return once it is complete. Up to
  // `window` pieces are in flight; each is published, in order, after it settles.
  template <class Fill, class Settle>
  Result<void> write_windowed(std::uint64_t bytes, unsigned window, Fill&& fill, Settle&& settle, PeerCheck alive,
                              WaitPolicy policy);

 private:
  Result<std::uint64_t> wait_for_space(PeerCheck alive, WaitPolicy policy);
  void publish(std::uint64_t position);

  PipeView pipe_;
  std::uint64_t tail_ = 0;       // private: the end of the filled (maybe unsettled) pieces
  std::uint64_t published_ = 0;  // what the consumer has been told
  std::uint64_t head_seen_ = 0;  // last consumer position read and checked
};

class PipeReader {
 public:
  explicit PipeReader(PipeView pipe) : pipe_(pipe) {}

  // Takes `bytes` out of the pipe: `drain(source)` is called for each contiguous piece and must
  // be done with it when it returns. Blocks while the pipe is empty.
  template <class Drain>
  Result<void> read(std::uint64_t bytes, Drain&& drain, PeerCheck alive, WaitPolicy policy) {
    return read_windowed(
        bytes, 0, [&](std::span<const std::byte> piece, std::uint64_t) { drain(piece); }, [](std::uint64_t) {},
        alive, policy);
  }

  // Like read(), for a drainer that completes asynchronously (a DMA out of the pipe):
  // drain(piece, index) starts on piece `index`; settle(index) must return once it is done with
  // it. Up to `window` pieces are in flight; each is handed back to the producer, in order,
  // after it settles.
  template <class Drain, class Settle>
  Result<void> read_windowed(std::uint64_t bytes, unsigned window, Drain&& drain, Settle&& settle, PeerCheck alive,
                             WaitPolicy policy);

 private:
  Result<std::uint64_t> wait_for_bytes(PeerCheck alive, WaitPolicy policy);
  void release(std::uint64_t position);

  PipeView pipe_;
  std::uint64_t head_ = 0;       // private: the end of the pieces handed out
  std::uint64_t released_ = 0;   // what the producer has been given back
  std::uint64_t tail_seen_ = 0;  // last producer position read and checked
};

// The pieces a windowed transfer has in flight: their indices and end positions, oldest first.
class InFlight {
 public:
  void push(std::uint64_t index, std::uint64_t end) { pieces_[(first_ + count_++) % kMax] = {index, end}; }
  [[nodiscard]] unsigned size() const { return count_; }
  std::pair<std::uint64_t, std::uint64_t> pop() {
    const auto oldest = pieces_[first_];
    first_ = (first_ + 1) % kMax;
    --count_;
    return oldest;
  }
  static constexpr unsigned kMax = 64;

 private:
  std::pair<std::uint64_t, std::uint64_t> pieces_[kMax];
  unsigned first_ = 0, count_ = 0;
};

// The largest window a pipe allows: the producer must always have a chunk of space left.
inline unsigned max_window(const PipeView& pipe) {
  const std::uint64_t chunks = pipe.capacity / kStagingChunkBytes;
  return static_cast<unsigned>(std::min<std::uint64_t>(chunks > 1 ? chunks - 1 : 0, InFlight::kMax - 1));
}

template <class Fill, class Settle>
Result<void> PipeWriter::write_windowed(std::uint64_t bytes, unsigned window, Fill&& fill, Settle&& settle,
                                        PeerCheck alive, WaitPolicy policy) {
  window = std::min(window, max_window(pipe_));
  InFlight in_flight;
  for (std::uint64_t index = 0; bytes > 0; ++index) {
    auto space = wait_for_space(alive, policy);
    if (!space) return space.error();
    const std::uint64_t offset = tail_ & (pipe_.capacity - 1);
    std::uint64_t piece = std::min({bytes, space.value(), pipe_.capacity - offset});
    piece = std::min(piece, kStagingChunkBytes - (offset % kStagingChunkBytes));
    fill(std::span<std::byte>(pipe_.data + offset, piece), index);
    tail_ += piece;
    bytes -= piece;
    in_flight.push(index, tail_);
    while (in_flight.size() > window) {
      const auto [settled, end] = in_flight.pop();
      settle(settled);
      publish(end);
    }
  }
  while (in_flight.size() > 0) {
    const auto [settled, end] = in_flight.pop();
    settle(settled);
    publish(end);
  }
  return boost::outcome_v2::success();
}

template <class Drain, class Settle>
Result<void> PipeReader::read_windowed(std::uint64_t bytes, unsigned window, Drain&& drain, Settle&& settle,
                                       PeerCheck alive, WaitPolicy policy) {
  window = std::min(window, max_window(pipe_));
  InFlight in_flight;
  for (std::uint64_t index = 0; bytes > 0; ++index) {
    auto available = wait_for_bytes(alive, policy);
    if (!available) return available.error();
    const std::uint64_t offset = head_ & (pipe_.capacity - 1);
    std::uint64_t piece = std::min({bytes, available.value(), pipe_.capacity - offset});
    piece = std::min(piece, kStagingChunkBytes - (offset % kStagingChunkBytes));
    drain(std::span<const std::byte>(pipe_.data + offset, piece), index);
    head_ += piece;
    bytes -= piece;
    in_flight.push(index, head_);
    while (in_flight.size() > window) {
      const auto [settled, end] = in_flight.pop();
      settle(settled);
      release(end);
    }
  }
  while (in_flight.size() > 0) {
    const auto [settled, end] = in_flight.pop();
    settle(settled);
    release(end);
  }
  return boost::outcome_v2::success();
}

}  // namespace gpubroker::ipc
