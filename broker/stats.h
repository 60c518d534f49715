// Publishes the stats segment (wire/stats.h): a file beside the socket that the broker maps
// read-write and monitors map read-only. Nothing here ever waits for a reader.
//
// StatsPublisher is created on the main thread; open_session() may be called from any thread;
// each SessionStatsWriter is used by its session's dispatcher thread alone.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>

#include "broker/device_layer.h"
#include "gpubroker/wire/stats.h"
#include "ipc/result.h"
#include "ipc/system.h"

namespace gpubroker::broker {

class SessionStatsWriter {
 public:
  SessionStatsWriter() = default;
  explicit SessionStatsWriter(wire::SessionStats* slot) : slot_(slot) {}
  // A session without a slot of its own: counted in `others` (wire::OtherSessions) until it ends.
  explicit SessionStatsWriter(wire::OtherSessions* others);
  SessionStatsWriter(SessionStatsWriter&& other) noexcept
      : slot_(std::exchange(other.slot_, nullptr)),
        others_(std::exchange(other.others_, nullptr)),
        device_bytes_(other.device_bytes_),
        pinned_bytes_(other.pinned_bytes_) {}
  SessionStatsWriter& operator=(SessionStatsWriter&&) = delete;
  ~SessionStatsWriter();  // marks the slot free, or takes the session's memory out of `others`

  // One handled request of `kind` (counted by kind in the slot; a session without a slot counts
  // in the others' totals only): how long the broker spent on it (negative: not timed, not in
  // the latency histogram) and what it moved.
  void record_call(std::uint16_t kind, std::int64_t handling_ns, bool failed, std::uint64_t bytes_to_device,
                   std::uint64_t bytes_from_device, std::uint64_t device_bytes, std::uint64_t pinned_bytes);

 private:
  wire::SessionStats* slot_ = nullptr;     // the session's own slot, or
  wire::OtherSessions* others_ = nullptr;  // where it is summed with the others (all slots taken)
  // What this session last added to others_' gauges, so that the next call adds the difference.
  std::uint64_t device_bytes_ = 0;
  std::uint64_t pinned_bytes_ = 0;
};

class StatsPublisher {
 public:
  // Creates (or replaces) the stats file at `path`.
  static ipc::Result<std::unique_ptr<StatsPublisher>> create(const std::string& path, const DeviceLayer& device);
  ~StatsPublisher();  // removes the file

  SessionStatsWriter open_session(std::uint64_t session_id, std::uint32_t pid, std::uint32_t abi, const char* program);
  void count_violation();
  // Rewrites the heartbeat and the device block (`used_bytes[i]`: what sessions hold on device i;
  // `driver_used_bytes[i]`: the driver's total - free of device i); call about once a second.
  void heartbeat(std::span<const std::uint64_t> used_bytes, std::span<const std::uint64_t> driver_used_bytes);

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  StatsPublisher() = default;

  std::string path_;
  ipc::Mapping mapping_;
  wire::StatsSegment* stats_ = nullptr;
  std::mutex slots_lock_;  // guards claiming a free slot
};

// The stats file that belongs to a broker socket.
inline std::string stats_path_for(const std::string& socket_path) { return socket_path + ".stats"; }

// Seconds since the epoch in nanoseconds (CLOCK_REALTIME), for ages a person reads.
std::int64_t realtime_ns();

}  // namespace gpubroker::broker
