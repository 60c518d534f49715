#include "broker/stats.h"

#include "gpubroker/calls/protocol.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bit>
#include <cstring>

namespace gpubroker::broker {

namespace {

// A writer's critical section: odd sequence while the block changes. Pairs with the acquire
// loads in wire::read_consistent().
template <class Block, class Update>
void publish(Block& block, Update&& update) {
  std::atomic_ref sequence(block.sequence);
  const std::uint32_t s = sequence.load(std::memory_order_relaxed);
  sequence.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  update(block);
  sequence.store(s + 2, std::memory_order_release);
}

// The OtherSessions words are counters any session thread adds to; readers load them one by one.
void add_to(std::uint64_t& word, std::uint64_t delta) {
  std::atomic_ref(word).fetch_add(delta, std::memory_order_relaxed);
}

}  // namespace

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

SessionStatsWriter::SessionStatsWriter(wire::OtherSessions* others) : others_(others) { add_to(others_->sessions, 1); }

SessionStatsWriter::~SessionStatsWriter() {
  if (slot_ != nullptr) publish(*slot_, [](wire::SessionStats& s) { s.in_use = 0; });
  if (others_ != nullptr) {
    // Unsigned wrap-around subtracts: the gauges lose exactly what this session added.
    add_to(others_->device_bytes, -device_bytes_);
    add_to(others_->pinned_bytes, -pinned_bytes_);
    add_to(others_->sessions, -std::uint64_t{1});
  }
}

// Every request kind has its counter in a session's slot.
static_assert(static_cast<std::size_t>(wire::RequestKind::kCount) <= wire::kStatsKinds);

void SessionStatsWriter::record_call(std::uint16_t kind, std::int64_t handling_ns, bool failed, std::uint64_t bytes_to_device,
                                     std::uint64_t bytes_from_device, std::uint64_t device_bytes,
                                     std::uint64_t pinned_bytes) {
  if (others_ != nullptr) {
    add_to(others_->calls, 1);
    add_to(others_->errors, failed ? 1 : 0);
    add_to(others_->bytes_to_device, bytes_to_device);
    add_to(others_->bytes_from_device, bytes_from_device);
    add_to(others_->device_bytes, device_bytes - std::exchange(device_bytes_, device_bytes));
    add_to(others_->pinned_bytes, pinned_bytes - std::exchange(pinned_bytes_, pinned_bytes));
    return;
  }
  if (slot_ == nullptr) return;
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(handling_ns, 1));
  const unsigned bucket = std::min<unsigned>(std::bit_width(ns) - 1, wire::kLatencyBuckets - 1);
  const bool timed = handling_ns >= 0;
  publish(*slot_, [&](wire::SessionStats& s) {
    ++s.calls;
    s.errors += failed ? 1 : 0;
    s.bytes_to_device += bytes_to_device;
    s.bytes_from_device += bytes_from_device;
    s.device_bytes = device_bytes;
    s.pinned_bytes = pinned_bytes;
    if (timed) ++s.latency_buckets[bucket];
    if (kind < wire::kStatsKinds) {
      ++s.calls_by_kind[kind];
      s.last_kind = kind;
    }
  });
}

ipc::Result<std::unique_ptr<StatsPublisher>> StatsPublisher::create(const std::string& path, const DeviceLayer& device) {
  ::unlink(path.c_str());
  // Readable by the broker's group (the socket's users, broker-top's) only: it names every
  // session's pid and program. fchmod: whatever the umask.
  ipc::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (!fd.valid()) return ipc::system_error(errno);
  if (::fchmod(fd.get(), 0640) != 0) return ipc::system_error(errno);
  if (::ftruncate(fd.get(), sizeof(wire::StatsSegment)) != 0) return ipc::system_error(errno);
  auto mapping = ipc::map_shared(fd.get(), sizeof(wire::StatsSegment));
  if (!mapping) return mapping.error();
  auto publisher = std::unique_ptr<StatsPublisher>(new StatsPublisher());
  publisher->path_ = path;
  publisher->stats_ = mapping.value().as<wire::StatsSegment>();
  publisher->mapping_ = std::move(mapping.value());
  wire::StatsHeader& h = publisher->stats_->header;
  h.version = wire::kStatsVersion;
  h.session_slots = wire::kStatsSessionSlots;
  h.fingerprint = wire::kLayoutFingerprint;
  h.broker_pid = static_cast<std::uint32_t>(::getpid());
  h.simulated = device.devices().simulated;
  h.started_ns = h.heartbeat_ns = realtime_ns();
  publish(publisher->stats_->devices, [&](wire::DeviceStats& d) {
    d.count = device.devices().count;
    for (std::uint32_t i = 0; i < d.count; ++i) {
      const wire::DeviceRecord& record = device.devices().devices[i];
      std::memcpy(d.devices[i].name, record.name, sizeof(d.devices[i].name) - 1);
      std::memcpy(d.devices[i].uuid, record.uuid, sizeof(record.uuid));
      d.devices[i].total_bytes = record.total_bytes;
      d.devices[i].utilization_percent = -1;
    }
  });
  // The magic goes last: a monitor that sees it sees a complete header.
  std::atomic_ref(h.magic).store(wire::kStatsMagic, std::memory_order_release);
  return publisher;
}

StatsPublisher::~StatsPublisher() { ::unlink(path_.c_str()); }

SessionStatsWriter StatsPublisher::open_session(std::uint64_t session_id, std::uint32_t pid, std::uint32_t abi,
                                                const char* program) {
  std::lock_guard guard(slots_lock_);
  std::atomic_ref(stats_->header.sessions_total).fetch_add(1, std::memory_order_relaxed);
  for (wire::SessionStats& slot : stats_->sessions) {
    if (slot.in_use != 0) continue;
    publish(slot, [&](wire::SessionStats& s) {
      const std::uint32_t sequence = s.sequence;
      std::memset(&s, 0, sizeof(s));
      s.sequence = sequence;
      s.in_use = 1;
      s.session_id = session_id;
      s.pid = pid;
      s.abi = abi;
      std::strncpy(s.program, program, sizeof(s.program) - 1);
      s.started_ns = realtime_ns();
    });
    return SessionStatsWriter(&slot);
  }
  return SessionStatsWriter(&stats_->others);
}

void StatsPublisher::count_violation() {
  std::atomic_ref(stats_->header.violations_total).fetch_add(1, std::memory_order_relaxed);
}

void StatsPublisher::heartbeat(std::span<const std::uint64_t> used_bytes, std::span<const std::uint64_t> driver_used_bytes) {
  publish(stats_->devices, [&](wire::DeviceStats& d) {
    for (std::size_t i = 0; i < d.count && i < used_bytes.size(); ++i) d.devices[i].used_bytes = used_bytes[i];
    for (std::size_t i = 0; i < d.count && i < driver_used_bytes.size(); ++i) {
      d.devices[i].driver_used_bytes = driver_used_bytes[i];
    }
  });
  std::atomic_ref(stats_->header.heartbeat_ns).store(realtime_ns(), std::memory_order_release);
}

}  // namespace gpubroker::broker
