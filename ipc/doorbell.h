// Waiting for the other process without a system call when it is busy, and without an unbounded
// sleep when it is not.
//
// A waiter spins on its condition for the policy's spin time, then counts itself in the bell's
// `sleepers` word and sleeps on the `sequence` futex in slices of kLivenessSlice, checking between
// slices that the peer is still alive. A ringer publishes its data, then ring() or wake_sleepers():
// a full fence, then a system call only if someone sleeps.
//
// The handshake is the io_uring one: waiter {sleepers += 1; fence; re-check condition; futex wait}
// against ringer {publish; fence; read sleepers}. Whatever the interleaving, either the waiter's
// re-check sees the data or the ringer sees the sleeper; and a ring between the waiter's read of
// `sequence` and its futex wait changes `sequence`, so the wait returns at once.
//
// Both words live in shared memory that the peer can overwrite: a hostile value can at worst make
// a waiter sleep one slice too long or make a ringer issue a needless wake.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

#include "gpubroker/wire/segments.h"
#include "ipc/system.h"

namespace gpubroker::ipc {

// How long a waiter sleeps between liveness checks: a dead peer is noticed within this (plus
// scheduling), far inside the 100 ms the design promises.
inline constexpr std::chrono::nanoseconds kLivenessSlice = std::chrono::milliseconds(10);
inline constexpr std::int64_t kYieldAfterNs = 4'000;

enum class WaitMode : std::uint8_t { kSpin, kAdaptive, kSleep };

// How long to spin before sleeping. kSpin never sleeps (but still checks liveness every slice);
// kSleep sleeps at once; kAdaptive spins briefly, long enough to catch a reply from a busy peer.
// Past kYieldAfter a spinner also yields its core at each check: when more threads are runnable
// than there are cores, the peer it waits for may be queued on this very core.
struct WaitPolicy {
  std::int64_t spin_ns;

  static constexpr WaitPolicy of(WaitMode mode) {
    switch (mode) {
      case WaitMode::kSpin: return {std::numeric_limits<std::int64_t>::max()};
      case WaitMode::kSleep: return {0};
      case WaitMode::kAdaptive: break;
    }
    return {50'000};
  }

  // For a client waiting for a call's reply. A reply may wait for the device (a synchronize, a
  // synchronous copy), and CUDA's own default (cudaDeviceScheduleAuto) spins through such waits
  // while the machine has cores to spare: adaptive spins, yielding, up to 10 ms on a host of 8 or
  // more cores (a 5 ms copy on an H200 came back 2-6% late through a futex wake-up) and up to
  // 1 ms on a smaller one (where a monitor or the device's own worker needs the core more). Spin
  // and sleep stay as they are.
  [[nodiscard]] WaitPolicy for_replies(unsigned cores) const {
    if (spin_ns != of(WaitMode::kAdaptive).spin_ns) return *this;
    return {cores >= 8 ? 10'000'000 : 1'000'000};
  }
};

enum class WaitResult : std::uint8_t { kReady, kPeerGone, kTimedOut };

inline constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();

// The two words of a bell; for a Mailbox they are its sequence and sleepers.
struct BellWords {
  std::uint32_t* sequence;
  std::uint32_t* sleepers;
};

inline BellWords bell(wire::Doorbell& doorbell) { return {&doorbell.sequence, &doorbell.sleepers}; }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Wakes whoever sleeps on `words` after the caller has changed `*words.sequence` itself (a mailbox
// completion). Pairs with the sleepers increment and fence in wait_until().
inline void wake_sleepers(BellWords words) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (std::atomic_ref(*words.sleepers).load(std::memory_order_relaxed) != 0) {
    futex_wake_all(words.sequence);
  }
}

// Publishes "something changed" after the caller has published its data with release stores.
inline void ring(BellWords words) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (std::atomic_ref(*words.sleepers).load(std::memory_order_relaxed) != 0) {
    std::atomic_ref(*words.sequence).fetch_add(1, std::memory_order_release);
    futex_wake_all(words.sequence);
  }
}

// Waits until ready() holds, the peer is gone (alive() false) or the deadline (monotonic ns)
// passes. ready() and alive() are called often and must be cheap; alive() is called at most once
// per kLivenessSlice. Blocks the calling thread; any thread may call it.
template <class Ready, class Alive>
WaitResult wait_until(BellWords words, Ready&& ready, Alive&& alive, WaitPolicy policy,
                      std::int64_t deadline_ns = kNoDeadline) {
  if (ready()) return WaitResult::kReady;
  const std::int64_t slice = kLivenessSlice.count();
  const std::int64_t start = monotonic_ns();
  std::int64_t next_check = start + slice;
  // kReady here means "keep waiting".
  auto check_peer = [&](std::int64_t now) {
    if (now >= deadline_ns) return WaitResult::kTimedOut;
    if (now < next_check) return WaitResult::kReady;
    if (!alive()) return WaitResult::kPeerGone;
    next_check = now + slice;
    return WaitResult::kReady;
  };
  if (policy.spin_ns > 0) {
    for (std::uint32_t i = 1;; ++i) {
      if (ready()) return WaitResult::kReady;
      cpu_relax();
      if ((i & 63) == 0) {
        const std::int64_t now = monotonic_ns();
        if (WaitResult r = check_peer(now); r != WaitResult::kReady) return r;
        if (now - start >= policy.spin_ns) break;
        if (now - start >= kYieldAfterNs) yield_core();
      }
    }
  }
  std::atomic_ref sleepers(*words.sleepers);
  std::atomic_ref sequence(*words.sequence);
  for (;;) {
    const std::uint32_t seen = sequence.load(std::memory_order_acquire);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the fence in ring()
    if (ready()) {
      sleepers.fetch_sub(1, std::memory_order_relaxed);
      return WaitResult::kReady;
    }
    const std::int64_t before = monotonic_ns();
    const std::int64_t nap = std::min(next_check, deadline_ns) - before;
    if (nap > 0) futex_wait(words.sequence, seen, std::chrono::nanoseconds(nap));
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (ready()) return WaitResult::kReady;
    // Woken or timed out without the condition: look at the peer now (it may have hung up and
    // woken us to say so).
    next_check = 0;
    if (WaitResult r = check_peer(monotonic_ns()); r != WaitResult::kReady) return r;
  }
}

}  // namespace gpubroker::ipc
