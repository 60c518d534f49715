// The stats segment: what the broker publishes about itself, its devices and its sessions for
// monitors (broker-top, the metrics endpoint). It is a file beside the socket
// (`<socket>.stats`, mode 0640: the broker's group) that the broker maps read-write and monitors map read-only.
//
// Writers never wait for readers: each session slot and the device block are guarded by a
// sequence counter (odd while a write is in progress). A reader copies the slot, re-reads the
// counter, and retries if it changed or was odd; see read_consistent(). The broker rewrites the
// header's heartbeat every second, so a monitor can tell a live broker from a stale file.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "gpubroker/wire/segments.h"

namespace gpubroker::wire {

inline constexpr std::uint64_t kStatsMagic = 0x7374617473627067ull;  // "gpbstats"
inline constexpr std::uint32_t kStatsVersion = 3;
inline constexpr std::uint32_t kStatsSessionSlots = 256;
inline constexpr std::uint32_t kLatencyBuckets = 32;  // bucket i: [2^i, 2^(i+1)) ns of handling time
// Per-session call counts by request kind (the CUDA half's RequestKind values; the broker checks
// that every kind fits).
inline constexpr std::uint32_t kStatsKinds = 96;

struct StatsHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t session_slots;
  std::uint64_t fingerprint;  // kLayoutFingerprint of the broker that wrote it
  std::uint32_t broker_pid;
  std::uint32_t simulated;  // 1 on the sim driver
  std::int64_t started_ns;    // CLOCK_REALTIME
  std::int64_t heartbeat_ns;  // CLOCK_REALTIME, rewritten every second while the broker lives
  std::uint64_t sessions_total;  // sessions ever opened
  std::uint64_t violations_total;
  std::byte reserved[kLineBytes - 64];
};

struct DeviceStats {
  alignas(kLineBytes) std::uint32_t sequence;  // odd while being written
  std::uint32_t count;
  struct Device {
    char name[64];
    std::uint8_t uuid[16];
    std::uint64_t total_bytes;
    std::uint64_t used_bytes;  // held by sessions through the broker
    std::int32_t utilization_percent;  // -1 when unknown
    std::int32_t reserved;
    // The driver's figure (total - free from cuMemGetInfo in the device's primary context),
    // sampled by the heartbeat: every context's memory, the broker's own and other processes'.
    std::uint64_t driver_used_bytes;
  } devices[kMaxDevices];
};

struct SessionStats {
  alignas(kLineBytes) std::uint32_t sequence;  // odd while being written; 0: never used
  std::uint32_t in_use;                        // 1 while the session is open
  std::uint64_t session_id;
  std::uint32_t pid;
  std::uint32_t abi;
  char program[64];
  std::int64_t started_ns;  // CLOCK_REALTIME
  std::uint64_t device_bytes;
  std::uint64_t pinned_bytes;  // host-arena bytes registered with the driver
  std::uint64_t calls;
  std::uint64_t errors;  // completions with a non-success status
  std::uint64_t bytes_to_device;
  std::uint64_t bytes_from_device;
  // The broker's handling time of every synchronous request and of one posted request in 64.
  std::uint64_t latency_buckets[kLatencyBuckets];
  std::uint32_t last_kind;  // the request kind of the latest call (0: none yet)
  std::uint32_t reserved;
  std::uint64_t calls_by_kind[kStatsKinds];  // indexed by request kind
};

// The sessions that found every slot taken, summed: they are counted here instead of being left
// out, so totals stay exact however many sessions there are. Each word is an atomic counter of
// its own (fetch_add by the sessions' threads; no sequence: a reader loads each word once).
struct OtherSessions {
  alignas(kLineBytes) std::uint64_t sessions;  // open now
  std::uint64_t device_bytes;
  std::uint64_t pinned_bytes;
  std::uint64_t calls;   // since the broker started, closed sessions' included
  std::uint64_t errors;  // likewise
  std::uint64_t bytes_to_device;
  std::uint64_t bytes_from_device;
};

struct StatsSegment {
  StatsHeader header;
  DeviceStats devices;
  OtherSessions others;
  SessionStats sessions[kStatsSessionSlots];
};

// Copies `source` into `copy` without blocking its writer; false if no consistent copy was had in
// a few tries (the writer is mid-update; try again later).
template <class Block>
bool read_consistent(const Block& source, Block& copy) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    // Pairs with the writer's release increments around its update.
    const std::uint32_t before =
        std::atomic_ref(const_cast<std::uint32_t&>(source.sequence)).load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    std::memcpy(&copy, &source, sizeof(Block));
    std::atomic_thread_fence(std::memory_order_acquire);
    const std::uint32_t after =
        std::atomic_ref(const_cast<std::uint32_t&>(source.sequence)).load(std::memory_order_relaxed);
    if (before == after) return true;
  }
  return false;
}

}  // namespace gpubroker::wire
