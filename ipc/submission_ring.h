// The submission ring: many client threads produce requests, one broker thread consumes them.
//
// Each slot carries its own sequence word (RequestHeader::sequence), in the manner of a bounded
// multi-producer queue: a producer takes a ticket t from a counter private to its process, waits
// until slot t % N holds sequence t (free for this lap), fills it and release-stores t + 1. The
// consumer, at its private position h, waits for sequence h + 1, copies the slot out and
// release-stores h + N to hand it back to the producers. Tickets are taken in call order, so the
// requests of one thread stay in the order that thread made them.
//
// The consumer never trusts the ring: its position is private, every index is masked, the slot is
// copied out before it is looked at (payload length clamped to the slot), and a slot that a
// hostile client marks "full" with garbage in it is just a request that fails validation. While a
// request is handled, the consumer prefetches the slots that are already published after it, so
// that their copies do not wait for the client core's cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "gpubroker/wire/segments.h"
#include "ipc/doorbell.h"

namespace gpubroker::ipc {

inline constexpr std::uint64_t kRingMask = wire::kRingSlots - 1;
static_assert((wire::kRingSlots & kRingMask) == 0, "the ring size must be a power of two");

// Sets every slot free for the first lap. Broker only, before the segment is handed over.
void initialize_submission_ring(wire::ControlSegment& control);

// Client side. Thread-safe: any number of threads may produce at once.
class SubmissionProducer {
 public:
  explicit SubmissionProducer(wire::ControlSegment& control) : control_(control) {}

  // Claims the next slot, waiting (per `policy`, checking `alive`) while the ring is full.
  // On kReady, fill the slot's header fields other than `sequence` and its payload, then publish().
  template <class Alive>
  WaitResult claim(wire::RequestSlot*& slot, std::uint64_t& ticket, Alive&& alive, WaitPolicy policy) {
    ticket = next_ticket_.fetch_add(1, std::memory_order_relaxed);
    slot = &control_.slots[ticket & kRingMask];
    std::atomic_ref sequence(slot->header.sequence);
    // Pairs with the consumer's release store of ticket (= h + N of the previous lap).
    return wait_until(
        bell(control_.slots_freed),
        [&] { return sequence.load(std::memory_order_acquire) == ticket; }, alive, policy);
  }

  void publish(wire::RequestSlot* slot, std::uint64_t ticket) {
    // Pairs with the consumer's acquire load in SubmissionConsumer::try_take().
    std::atomic_ref(slot->header.sequence).store(ticket + 1, std::memory_order_release);
    ring(bell(control_.submitted));
  }

 private:
  wire::ControlSegment& control_;
  std::atomic<std::uint64_t> next_ticket_{0};
};

// Broker side: one thread per session consumes.
class SubmissionConsumer {
 public:
  explicit SubmissionConsumer(wire::ControlSegment& control) : control_(control) {}

  // Copies the next request into `out` if one has been published, and frees its slot. Bytes of
  // out.payload past the request's payload length are left unspecified (a handler reads no
  // further than the length validate() bounds).
  bool try_take(wire::RequestSlot& out) {
    wire::RequestSlot& slot = control_.slots[head_ & kRingMask];
    std::atomic_ref sequence(slot.header.sequence);
    // Pairs with the producer's release store in SubmissionProducer::publish().
    if (sequence.load(std::memory_order_acquire) != head_ + 1) {
      taken_in_a_row_ = 0;
      return false;
    }
    ++taken_in_a_row_;
    std::memcpy(&out.header, &slot.header, sizeof(out.header));
    copy_payload(out, slot, std::min<std::size_t>(out.header.payload_bytes, sizeof(out.payload)));
    // Pairs with the producer's acquire load in SubmissionProducer::claim(), one lap later.
    sequence.store(head_ + wire::kRingSlots, std::memory_order_release);
    ++head_;
    ++freed_unannounced_;
    prefetch_published();
    return true;
  }

  [[nodiscard]] bool has_request() const {
    const wire::RequestSlot& slot = control_.slots[head_ & kRingMask];
    return std::atomic_ref(const_cast<std::uint64_t&>(slot.header.sequence))
               .load(std::memory_order_acquire) == head_ + 1;
  }

  // Wakes producers that sleep on a full ring, if slots were freed since the last call. Called
  // when the consumer runs dry, and every so often in a long batch.
  void announce_freed_slots() {
    if (freed_unannounced_ == 0) return;
    freed_unannounced_ = 0;
    ring(bell(control_.slots_freed));
  }

  [[nodiscard]] std::uint32_t freed_unannounced() const { return freed_unannounced_; }

  template <class Alive>
  WaitResult wait(Alive&& alive, WaitPolicy policy, std::int64_t deadline_ns = kNoDeadline) {
    announce_freed_slots();
    return wait_until(bell(control_.submitted), [&] { return has_request(); }, alive, policy,
                      deadline_ns);
  }

 private:
  // The payload is copied in whole chunks of this size: a fixed-size copy is a vector move, where
  // a copy of the exact length compiled to `rep movsq`, whose start-up cost was most of a
  // launch's copy. The payload area is a whole number of chunks, so rounding up stays in the slot.
  static constexpr std::size_t kCopyChunk = 32;
  static_assert(wire::kInlinePayloadBytes % kCopyChunk == 0);
  // How many slots after the next one have their first line prefetched when the client is well
  // ahead: the consumer has taken kWellAhead requests without finding the ring empty.
  static constexpr std::uint64_t kPrefetchSlots = 2;
  static constexpr std::uint32_t kWellAhead = 64;
  static constexpr std::size_t kCacheLine = 64;

  static void copy_payload(wire::RequestSlot& out, const wire::RequestSlot& slot, std::size_t bytes) {
    for (std::size_t at = 0; at < bytes; at += kCopyChunk) std::memcpy(out.payload + at, slot.payload + at, kCopyChunk);
  }

  // Starts loading the slots to come while the caller handles the request just taken. A slot's
  // lines sit in the cache of the client core that wrote them, and reading them only when its
  // turn came cost the consumer a cross-core miss per request: once the client outran the broker
  // (launches on the sim), that wait was most of the consumer's own time. So when the next slot
  // is already published, its remaining lines are prefetched; and when the client is well ahead,
  // so are the first lines of the kPrefetchSlots after it, whose sequences the next calls read.
  // A slot not known to be published is left alone otherwise: a client that is barely ahead may
  // be writing it now, and reading it would only take the line from it (prefetching ahead on
  // every request cost the transport's posted messages 3-8%). Only a hint: nothing read here is
  // used, try_take() copies each slot after its own acquire load, and a hostile length prefetches
  // at most the lines of its own slot.
  void prefetch_published() {
    wire::RequestSlot& next = control_.slots[head_ & kRingMask];
    if (std::atomic_ref(next.header.sequence).load(std::memory_order_relaxed) != head_ + 1) return;
    const std::size_t payload = std::atomic_ref(next.header.payload_bytes).load(std::memory_order_relaxed);
    const std::size_t used = sizeof(wire::RequestHeader) + std::min(payload, wire::kInlinePayloadBytes);
    const auto* lines = reinterpret_cast<const char*>(&next);
    for (std::size_t at = kCacheLine; at < used; at += kCacheLine) __builtin_prefetch(lines + at, 0, 3);
    if (taken_in_a_row_ < kWellAhead) return;
    for (std::uint64_t ahead = 1; ahead <= kPrefetchSlots; ++ahead) {
      __builtin_prefetch(&control_.slots[(head_ + ahead) & kRingMask], 0, 3);
    }
  }

  wire::ControlSegment& control_;
  std::uint64_t head_ = 0;  // private: never read back from shared memory
  std::uint32_t freed_unannounced_ = 0;
  std::uint32_t taken_in_a_row_ = 0;  // requests taken since the ring was last found empty
};

}  // namespace gpubroker::ipc
