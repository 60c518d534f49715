// Reading the broker's stats file (wire/stats.h) from another process, and what monitors derive
// from it: rates from two samples, latency quantiles from the histogram, totals. broker-top and
// the broker's metrics endpoint both read the stats through this, so that they agree.
//
// Example:
//
//   auto file = StatsFile::open("/run/gpu-broker/broker.sock.stats");
//   if (!file) return fail(file.error().message);
//   Snapshot before = file.value().read();
//   sleep(1);
//   Snapshot now = file.value().read();
//   View view = derive(&before, now);   // view.sessions[i].calls_per_second, .latency_p99_ns, ...
//
// A StatsFile maps the file read-only and never writes to it; reading never blocks the broker
// (seqlocked copies, see wire::read_consistent). A StatsFile is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <array>
#include <boost/outcome/result.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpubroker/wire/stats.h"

namespace gpubroker::monitor {

enum class StatsErrc : std::uint8_t {
  kMissing,         // no stats file at the path: no broker there
  kSystem,          // open, fstat or mmap failed (sys_errno says why)
  kNotStats,        // too small, or not a stats file (magic)
  kStarting,        // the broker has created the file but not yet published its header
  kIncompatible,    // another stats version or layout fingerprint: broker and tool differ
};

struct StatsError {
  StatsErrc code;
  int sys_errno = 0;
  std::string message;  // a sentence for the person running the tool
};

template <class T>
using StatsResult = boost::outcome_v2::result<T, StatsError, boost::outcome_v2::policy::terminate>;

struct DeviceSample {
  std::uint32_t index = 0;
  std::string name;
  std::array<std::uint8_t, 16> uuid{};
  std::uint64_t total_bytes = 0;
  std::uint64_t used_bytes = 0;         // held by the broker's sessions
  std::uint64_t driver_used_bytes = 0;  // the driver's total - free (every context, every process)
  std::int32_t utilization_percent = -1;  // -1: unknown
};

struct SessionSample {
  std::uint64_t session_id = 0;
  std::uint32_t pid = 0;
  std::uint32_t abi = 0;
  std::string program;
  std::int64_t started_ns = 0;  // CLOCK_REALTIME
  std::uint64_t device_bytes = 0;
  std::uint64_t pinned_bytes = 0;
  std::uint64_t calls = 0;
  std::uint64_t errors = 0;
  std::uint64_t bytes_to_device = 0;
  std::uint64_t bytes_from_device = 0;
  std::array<std::uint64_t, wire::kLatencyBuckets> latency_buckets{};
  std::uint32_t last_kind = 0;  // the request kind of the latest call (0: none; others: none kept)
  std::array<std::uint64_t, wire::kStatsKinds> calls_by_kind{};  // by request kind
};

// One consistent-enough reading of the whole file: each device block and each session slot is a
// consistent copy; different slots may be a few microseconds apart.
struct Snapshot {
  std::int64_t taken_monotonic_ns = 0;
  std::int64_t taken_realtime_ns = 0;
  std::uint32_t broker_pid = 0;
  bool simulated = false;
  std::int64_t started_ns = 0;
  std::int64_t heartbeat_ns = 0;
  std::uint64_t sessions_total = 0;
  std::uint64_t violations_total = 0;
  std::vector<DeviceSample> devices;
  std::vector<SessionSample> sessions;  // open sessions, in slot order
  std::uint32_t unreadable_slots = 0;   // slots mid-update in every try (skipped this time)
  // The open sessions that found every slot taken, summed (wire::OtherSessions): their memory,
  // calls and bytes in one sample whose session_id, pid, abi and program are empty.
  std::uint64_t other_sessions = 0;
  SessionSample others;
};

enum class BrokerState : std::uint8_t {
  kLive,
  kStopped,    // the stats file was removed: the broker exited
  kReplaced,   // a new stats file took its place: the broker restarted
  kSilent,     // no heartbeat for kSilentAfterNs: the broker was killed or hangs
};

// The broker rewrites its heartbeat every second; three missed beats mean it is gone.
inline constexpr std::int64_t kSilentAfterNs = 3'000'000'000;

class StatsFile {
 public:
  // Maps the stats file at `path` read-only and checks its header.
  static StatsResult<StatsFile> open(const std::string& path);

  StatsFile(StatsFile&& other) noexcept;
  StatsFile& operator=(StatsFile&& other) noexcept;
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;
  ~StatsFile();

  [[nodiscard]] Snapshot read() const;
  // Whether the broker that writes this file is still there, judged by the file and `latest`.
  [[nodiscard]] BrokerState broker_state(const Snapshot& latest) const;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  StatsFile() = default;

  std::string path_;
  const wire::StatsSegment* stats_ = nullptr;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

struct SessionRow {
  SessionSample sample;
  // Per second over the interval since the previous snapshot; nullopt on a first snapshot.
  std::optional<double> calls_per_second;
  std::optional<double> bytes_to_device_per_second;
  std::optional<double> bytes_from_device_per_second;
  // Handling time of the calls made in the interval (the session's whole life when it made none
  // in the interval, or on a first snapshot); nullopt when the session never made a call.
  std::optional<double> latency_p50_ns;
  std::optional<double> latency_p99_ns;
  double age_seconds = 0;
  // The request kinds the session called most in the interval (over its whole life on a first
  // snapshot), at most three, most calls first: (kind, calls).
  std::vector<std::pair<std::uint32_t, std::uint64_t>> top_kinds;
  std::uint64_t kind_calls = 0;  // the calls of every kind in that same span
};

struct DeviceRow {
  DeviceSample sample;
  std::uint64_t free_bytes = 0;
};

struct Totals {
  std::uint32_t sessions = 0;
  std::uint64_t device_bytes = 0;
  std::uint64_t pinned_bytes = 0;
  std::uint64_t errors = 0;
  std::optional<double> calls_per_second;
  std::optional<double> bytes_to_device_per_second;
  std::optional<double> bytes_from_device_per_second;
};

struct View {
  Snapshot snapshot;
  std::optional<double> interval_seconds;  // since the previous snapshot
  std::vector<DeviceRow> devices;
  std::vector<SessionRow> sessions;
  // The sessions without a slot (Snapshot::other_sessions), as one row; nullopt when there are
  // none now and none made a call in the interval. Counted in the totals like the rest.
  std::optional<SessionRow> others;
  Totals totals;
};

// What a monitor shows for `current`, with rates over the time since `previous` (may be null).
View derive(const Snapshot* previous, const Snapshot& current);

// The q-quantile (0 < q <= 1) of a latency histogram whose bucket i holds calls that took
// [2^i, 2^(i+1)) ns, interpolated linearly inside the bucket; nullopt when it is empty.
std::optional<double> latency_quantile_ns(std::span<const std::uint64_t> buckets, double q);

// `text` as valid UTF-8 without control characters: invalid bytes become U+FFFD and control
// characters '?'. Program names come from clients and are trusted by no output format.
std::string printable_utf8(std::string_view text);

// The stats as one JSON object (broker, devices, sessions, totals); every device and session
// carries "device_bytes_used".
std::string to_json(const View& view, const std::string& socket_path);

// The stats file of a broker socket, and the socket a monitor or launcher uses when none is given:
// $GPUBROKER_SOCKET, else the caller's default socket if one is there, else the system service's.
std::string stats_path_for(const std::string& socket_path);
std::string socket_to_watch();

inline constexpr const char* kServiceSocket = "/run/gpu-broker/broker.sock";

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" for a device's UUID bytes, as nvidia-smi and NVML
// print it (and CUDA_VISIBLE_DEVICES takes it).
std::string uuid_text(const std::array<std::uint8_t, 16>& uuid);

}  // namespace gpubroker::monitor
