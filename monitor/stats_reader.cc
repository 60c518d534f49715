#include "monitor/stats_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <utility>

#include "gpubroker/wire/segments.h"
#include "ipc/socket_path.h"

namespace gpubroker::monitor {

namespace {

std::int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

template <class T>
T load(const T& field) {
  // Header words the broker updates while it runs (heartbeat, counters): single atomic loads.
  return std::atomic_ref(const_cast<T&>(field)).load(std::memory_order_acquire);
}

std::string bounded_string(const char* text, std::size_t capacity) { return std::string(text, strnlen(text, capacity)); }

StatsError error(StatsErrc code, std::string message, int sys_errno = 0) {
  return StatsError{code, sys_errno, std::move(message)};
}

std::optional<double> per_second(std::uint64_t now, std::uint64_t before, std::optional<double> interval) {
  if (!interval || *interval <= 0) return std::nullopt;
  return now >= before ? static_cast<double>(now - before) / *interval : 0.0;
}

void add(std::optional<double>& total, std::optional<double> value) {
  if (value) total = total.value_or(0.0) + *value;
}

// JSON helpers: numbers as JSON numbers, unknown values as null.
std::string json_number(std::optional<double> value) {
  if (!value || !std::isfinite(*value)) return "null";
  return fmt::format("{:.6g}", *value);
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : printable_utf8(text)) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out + "\"";
}

}  // namespace

std::string uuid_text(const std::array<std::uint8_t, 16>& u) {
  return fmt::format("GPU-{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}


StatsResult<StatsFile> StatsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return error(StatsErrc::kMissing, fmt::format("no broker stats at {}", path), ENOENT);
    return error(StatsErrc::kSystem, fmt::format("cannot open {}: {}", path, std::strerror(errno)), errno);
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return error(StatsErrc::kSystem, fmt::format("cannot stat {}: {}", path, std::strerror(err)), err);
  }
  if (static_cast<std::uint64_t>(st.st_size) < sizeof(wire::StatsSegment)) {
    ::close(fd);
    return error(StatsErrc::kNotStats, fmt::format("{} is not a gpu-broker stats file (too small)", path));
  }
  void* mapped = ::mmap(nullptr, sizeof(wire::StatsSegment), PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (mapped == MAP_FAILED) {
    return error(StatsErrc::kSystem, fmt::format("cannot map {}: {}", path, std::strerror(map_errno)), map_errno);
  }
  StatsFile file;
  file.path_ = path;
  file.stats_ = static_cast<const wire::StatsSegment*>(mapped);
  file.device_ = st.st_dev;
  file.inode_ = st.st_ino;
  const wire::StatsHeader& header = file.stats_->header;
  // Pairs with the publisher's release store of the magic, which it writes last.
  const std::uint64_t magic = load(header.magic);
  if (magic == 0) return error(StatsErrc::kStarting, fmt::format("the broker is still starting ({})", path));
  if (magic != wire::kStatsMagic) return error(StatsErrc::kNotStats, fmt::format("{} is not a gpu-broker stats file", path));
  if (header.version != wire::kStatsVersion || header.fingerprint != wire::kLayoutFingerprint ||
      header.session_slots != wire::kStatsSessionSlots) {
    return error(StatsErrc::kIncompatible,
                 fmt::format("{} was written by another gpubroker version (stats version {}, layout {:016x}; this tool "
                             "reads version {}, layout {:016x})",
                             path, header.version, header.fingerprint, wire::kStatsVersion, wire::kLayoutFingerprint));
  }
  return file;
}

StatsFile::StatsFile(StatsFile&& other) noexcept
    : path_(std::move(other.path_)),
      stats_(std::exchange(other.stats_, nullptr)),
      device_(other.device_),
      inode_(other.inode_) {}

StatsFile& StatsFile::operator=(StatsFile&& other) noexcept {
  if (this != &other) {
    if (stats_ != nullptr) ::munmap(const_cast<wire::StatsSegment*>(stats_), sizeof(wire::StatsSegment));
    path_ = std::move(other.path_);
    stats_ = std::exchange(other.stats_, nullptr);
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

StatsFile::~StatsFile() {
  if (stats_ != nullptr) ::munmap(const_cast<wire::StatsSegment*>(stats_), sizeof(wire::StatsSegment));
}

Snapshot StatsFile::read() const {
  Snapshot snapshot;
  snapshot.taken_monotonic_ns = clock_ns(CLOCK_MONOTONIC);
  snapshot.taken_realtime_ns = clock_ns(CLOCK_REALTIME);
  const wire::StatsHeader& header = stats_->header;
  snapshot.broker_pid = header.broker_pid;
  snapshot.simulated = header.simulated != 0;
  snapshot.started_ns = header.started_ns;
  snapshot.heartbeat_ns = load(header.heartbeat_ns);
  snapshot.sessions_total = load(header.sessions_total);
  snapshot.violations_total = load(header.violations_total);

  // Copied to the heap: the device block is a few KiB, too much for a monitor's stack habits.
  auto devices = std::make_unique<wire::DeviceStats>();
  if (wire::read_consistent(stats_->devices, *devices)) {
    const std::uint32_t count = std::min(devices->count, wire::kMaxDevices);
    for (std::uint32_t i = 0; i < count; ++i) {
      const auto& d = devices->devices[i];
      DeviceSample sample;
      sample.index = i;
      sample.name = bounded_string(d.name, sizeof(d.name));
      std::copy(std::begin(d.uuid), std::end(d.uuid), sample.uuid.begin());
      sample.total_bytes = d.total_bytes;
      sample.used_bytes = d.used_bytes;
      sample.driver_used_bytes = d.driver_used_bytes;
      sample.utilization_percent = d.utilization_percent;
      snapshot.devices.push_back(std::move(sample));
    }
  }
  for (const wire::SessionStats& slot : stats_->sessions) {
    // A slot never used has sequence 0 and in_use 0; skip it without copying.
    if (load(slot.sequence) == 0) continue;
    wire::SessionStats copy;
    if (!wire::read_consistent(slot, copy)) {
      ++snapshot.unreadable_slots;
      continue;
    }
    if (copy.in_use == 0) continue;
    SessionSample s;
    s.session_id = copy.session_id;
    s.pid = copy.pid;
    s.abi = copy.abi;
    s.program = bounded_string(copy.program, sizeof(copy.program));
    s.started_ns = copy.started_ns;
    s.device_bytes = copy.device_bytes;
    s.pinned_bytes = copy.pinned_bytes;
    s.calls = copy.calls;
    s.errors = copy.errors;
    s.bytes_to_device = copy.bytes_to_device;
    s.bytes_from_device = copy.bytes_from_device;
    std::copy(std::begin(copy.latency_buckets), std::end(copy.latency_buckets), s.latency_buckets.begin());
    s.last_kind = copy.last_kind;
    std::copy(std::begin(copy.calls_by_kind), std::end(copy.calls_by_kind), s.calls_by_kind.begin());
    snapshot.sessions.push_back(std::move(s));
  }
  const wire::OtherSessions& others = stats_->others;
  snapshot.other_sessions = load(others.sessions);
  snapshot.others.device_bytes = load(others.device_bytes);
  snapshot.others.pinned_bytes = load(others.pinned_bytes);
  snapshot.others.calls = load(others.calls);
  snapshot.others.errors = load(others.errors);
  snapshot.others.bytes_to_device = load(others.bytes_to_device);
  snapshot.others.bytes_from_device = load(others.bytes_from_device);
  return snapshot;
}

BrokerState StatsFile::broker_state(const Snapshot& latest) const {
  struct stat st{};
  if (::stat(path_.c_str(), &st) != 0) return BrokerState::kStopped;
  if (st.st_dev != device_ || st.st_ino != inode_) return BrokerState::kReplaced;
  if (latest.taken_realtime_ns - latest.heartbeat_ns > kSilentAfterNs) return BrokerState::kSilent;
  return BrokerState::kLive;
}

std::optional<double> latency_quantile_ns(std::span<const std::uint64_t> buckets, double q) {
  std::uint64_t total = 0;
  for (const std::uint64_t count : buckets) total += count;
  if (total == 0) return std::nullopt;
  const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  double below = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] == 0) continue;
    const double count = static_cast<double>(buckets[i]);
    if (below + count >= rank) {
      const double low = std::ldexp(1.0, static_cast<int>(i));
      return low + low * std::max(0.0, rank - below) / count;  // bucket i spans [low, 2 * low)
    }
    below += count;
  }
  return std::ldexp(1.0, static_cast<int>(buckets.size()));
}

View derive(const Snapshot* previous, const Snapshot& current) {
  View view;
  view.snapshot = current;
  if (previous != nullptr && current.taken_monotonic_ns > previous->taken_monotonic_ns) {
    view.interval_seconds = static_cast<double>(current.taken_monotonic_ns - previous->taken_monotonic_ns) / 1e9;
  }
  for (const DeviceSample& device : current.devices) {
    view.devices.push_back(DeviceRow{device, device.total_bytes > device.used_bytes ? device.total_bytes - device.used_bytes : 0});
  }
  std::map<std::uint64_t, const SessionSample*> before;
  if (previous != nullptr) {
    for (const SessionSample& s : previous->sessions) before[s.session_id] = &s;
  }
  const SessionSample none{};
  auto add_row = [&](const SessionSample& s, const SessionSample& was, std::uint32_t sessions) {
    SessionRow row;
    row.sample = s;
    row.calls_per_second = per_second(s.calls, was.calls, view.interval_seconds);
    row.bytes_to_device_per_second = per_second(s.bytes_to_device, was.bytes_to_device, view.interval_seconds);
    row.bytes_from_device_per_second = per_second(s.bytes_from_device, was.bytes_from_device, view.interval_seconds);
    std::array<std::uint64_t, wire::kLatencyBuckets> recent{};
    bool any_recent = false;
    if (view.interval_seconds) {
      for (std::size_t i = 0; i < recent.size(); ++i) {
        recent[i] = s.latency_buckets[i] >= was.latency_buckets[i] ? s.latency_buckets[i] - was.latency_buckets[i] : 0;
        any_recent = any_recent || recent[i] != 0;
      }
    }
    const std::span<const std::uint64_t> histogram = any_recent ? std::span<const std::uint64_t>(recent)
                                                                : std::span<const std::uint64_t>(s.latency_buckets);
    row.latency_p50_ns = latency_quantile_ns(histogram, 0.50);
    row.latency_p99_ns = latency_quantile_ns(histogram, 0.99);
    std::vector<std::pair<std::uint32_t, std::uint64_t>> kinds;
    for (std::uint32_t k = 0; k < wire::kStatsKinds; ++k) {
      const std::uint64_t calls = s.calls_by_kind[k] >= was.calls_by_kind[k] ? s.calls_by_kind[k] - was.calls_by_kind[k] : 0;
      if (calls != 0) kinds.emplace_back(k, calls);
      row.kind_calls += calls;
    }
    std::sort(kinds.begin(), kinds.end(), [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    if (kinds.size() > 3) kinds.resize(3);
    row.top_kinds = std::move(kinds);
    if (s.started_ns != 0) {
      row.age_seconds = std::max<double>(0.0, static_cast<double>(current.taken_realtime_ns - s.started_ns) / 1e9);
    }

    Totals& t = view.totals;
    t.sessions += sessions;
    t.device_bytes += s.device_bytes;
    t.pinned_bytes += s.pinned_bytes;
    t.errors += s.errors;
    add(t.calls_per_second, row.calls_per_second);
    add(t.bytes_to_device_per_second, row.bytes_to_device_per_second);
    add(t.bytes_from_device_per_second, row.bytes_from_device_per_second);
    return row;
  };
  for (const SessionSample& s : current.sessions) {
    // A session absent from the previous snapshot opened within the interval: its counters
    // started from zero inside it.
    const auto found = before.find(s.session_id);
    view.sessions.push_back(add_row(s, found != before.end() ? *found->second : none, 1));
  }
  // The others' counters only grow (closed sessions' calls stay in them), so one interval's
  // difference is their calls in it.
  const bool others_called = previous != nullptr && current.others.calls != previous->others.calls;
  if (current.other_sessions != 0 || others_called) {
    view.others = add_row(current.others, previous != nullptr ? previous->others : current.others,
                          static_cast<std::uint32_t>(current.other_sessions));
  }
  if (view.interval_seconds && view.sessions.empty() && !view.others) {
    view.totals.calls_per_second = view.totals.bytes_to_device_per_second = view.totals.bytes_from_device_per_second = 0.0;
  }
  return view;
}

std::string printable_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      out += (byte < 0x20 || byte == 0x7f) ? '?' : static_cast<char>(byte);
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence (no overlongs, no surrogates, at most U+10FFFF) is kept.
    std::size_t length = byte >= 0xf0 && byte <= 0xf4 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc2 && byte <= 0xdf ? 2 : 0;
    if (byte >= 0xf5) length = 0;
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (valid && length >= 3) {
      const auto second = static_cast<unsigned char>(text[i + 1]);
      if (byte == 0xe0 && second < 0xa0) valid = false;  // overlong
      if (byte == 0xed && second >= 0xa0) valid = false;  // surrogate
      if (byte == 0xf0 && second < 0x90) valid = false;  // overlong
      if (byte == 0xf4 && second >= 0x90) valid = false;  // above U+10FFFF
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  return out;
}

std::string to_json(const View& view, const std::string& socket_path) {
  const Snapshot& s = view.snapshot;
  std::string out = "{";
  out += fmt::format("\"socket\":{},\"broker\":{{\"pid\":{},\"driver\":\"{}\",\"started_ns\":{},\"uptime_seconds\":{},"
                     "\"heartbeat_age_seconds\":{},\"sessions_total\":{},\"violations_total\":{}}},",
                     json_string(socket_path), s.broker_pid, s.simulated ? "sim" : "cuda", s.started_ns,
                     json_number(static_cast<double>(s.taken_realtime_ns - s.started_ns) / 1e9),
                     json_number(static_cast<double>(s.taken_realtime_ns - s.heartbeat_ns) / 1e9), s.sessions_total,
                     s.violations_total);
  out += "\"interval_seconds\":" + json_number(view.interval_seconds) + ",\"devices\":[";
  for (std::size_t i = 0; i < view.devices.size(); ++i) {
    const DeviceRow& d = view.devices[i];
    out += fmt::format("{}{{\"index\":{},\"name\":{},\"uuid\":\"{}\",\"total_bytes\":{},\"device_bytes_used\":{},"
                       "\"free_bytes\":{},\"driver_used_bytes\":{},\"utilization_percent\":{}}}",
                       i == 0 ? "" : ",", d.sample.index, json_string(d.sample.name), uuid_text(d.sample.uuid),
                       d.sample.total_bytes, d.sample.used_bytes, d.free_bytes, d.sample.driver_used_bytes,
                       d.sample.utilization_percent < 0 ? std::string("null") : std::to_string(d.sample.utilization_percent));
  }
  out += "],\"sessions\":[";
  for (std::size_t i = 0; i < view.sessions.size(); ++i) {
    const SessionRow& r = view.sessions[i];
    const SessionSample& x = r.sample;
    out += fmt::format("{}{{\"session_id\":{},\"pid\":{},\"program\":{},\"abi\":{},\"device_bytes_used\":{},"
                       "\"pinned_bytes\":{},\"calls\":{},\"errors\":{},\"bytes_to_device\":{},\"bytes_from_device\":{},"
                       "\"calls_per_second\":{},\"bytes_to_device_per_second\":{},\"bytes_from_device_per_second\":{},"
                       "\"latency_p50_ns\":{},\"latency_p99_ns\":{},\"age_seconds\":{}}}",
                       i == 0 ? "" : ",", x.session_id, x.pid, json_string(x.program), x.abi, x.device_bytes,
                       x.pinned_bytes, x.calls, x.errors, x.bytes_to_device, x.bytes_from_device,
                       json_number(r.calls_per_second), json_number(r.bytes_to_device_per_second),
                       json_number(r.bytes_from_device_per_second), json_number(r.latency_p50_ns),
                       json_number(r.latency_p99_ns), json_number(r.age_seconds));
  }
  out += "]";
  if (view.others) {
    // The sessions that found every slot taken, summed (counted in the totals too).
    const SessionRow& r = *view.others;
    out += fmt::format(",\"others\":{{\"sessions\":{},\"device_bytes_used\":{},\"pinned_bytes\":{},\"calls\":{},"
                       "\"errors\":{},\"bytes_to_device\":{},\"bytes_from_device\":{},\"calls_per_second\":{}}}",
                       view.snapshot.other_sessions, r.sample.device_bytes, r.sample.pinned_bytes, r.sample.calls,
                       r.sample.errors, r.sample.bytes_to_device, r.sample.bytes_from_device,
                       json_number(r.calls_per_second));
  }
  const Totals& t = view.totals;
  out += fmt::format(",\"totals\":{{\"sessions\":{},\"device_bytes_used\":{},\"pinned_bytes\":{},\"errors\":{},"
                     "\"calls_per_second\":{},\"bytes_to_device_per_second\":{},\"bytes_from_device_per_second\":{}}}}}",
                     t.sessions, t.device_bytes, t.pinned_bytes, t.errors, json_number(t.calls_per_second),
                     json_number(t.bytes_to_device_per_second), json_number(t.bytes_from_device_per_second));
  return out;
}

std::string stats_path_for(const std::string& socket_path) { return socket_path + ".stats"; }

std::string socket_to_watch() {
  const char* configured = std::getenv("GPUBROKER_SOCKET");
  if (configured != nullptr && *configured != '\0') return configured;
  const std::string own = ipc::default_socket_path();
  if (::access(own.c_str(), F_OK) == 0) return own;
  if (::access(kServiceSocket, F_OK) == 0) return kServiceSocket;
  return own;
}

}  // namespace gpubroker::monitor
