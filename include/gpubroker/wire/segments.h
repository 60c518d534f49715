// Layouts of the shared-memory segments of one session and of the handshake messages.
//
// The broker creates each segment as a sealed memfd (no shrinking, no growing, no further seals),
// writes its header once, and hands it to the client at the handshake. The broker never reads a
// header back: it keeps the geometry privately. The client checks magic, version, fingerprint and
// sizes before it uses a segment.
//
//   control segment:  SegmentHeader | SessionWords | Doorbells | RequestSlot[kRingSlots]
//                     | Mailbox[kMailboxes]                                  (fixed size)
//   staging segment:  SegmentHeader | PipeControl to_broker | PipeControl from_broker
//                     | to_broker bytes[pipe_bytes] | from_broker bytes[pipe_bytes]
//   host arena:       bytes only; sub-allocated by the client, addressed by offset by the broker
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpubroker/wire/transport.h"

namespace gpubroker::wire {

inline constexpr std::uint64_t kSegmentMagic = 0x6b6f7262'75706700ull;  // "\0gpubrok"
inline constexpr std::uint64_t kHelloMagic = 0x6f6c6c65'68627067ull;     // "gpbhello"
inline constexpr std::uint64_t kWelcomeMagic = 0x6d6f636c'65776267ull;   // "gbwelcom"

inline constexpr std::uint32_t kRingSlots = 1024;  // power of two
inline constexpr std::uint32_t kMailboxes = 256;

enum class SegmentKind : std::uint32_t { kControl = 1, kStaging = 2 };

struct SegmentHeader {
  std::uint64_t magic;
  std::uint32_t version;  // kProtocolVersion
  std::uint32_t kind;     // SegmentKind
  std::uint64_t fingerprint;
  std::uint64_t bytes;       // the whole segment
  std::uint64_t pipe_bytes;  // staging only: capacity of each pipe
  std::byte reserved[kLineBytes - 40];
};

// A futex doorbell: the ringer bumps `sequence` and wakes; a waiter counts itself in `sleepers`
// before it sleeps. Each field is written by one side only, hence the separate lines.
struct Doorbell {
  alignas(kLineBytes) std::uint32_t sequence;
  alignas(kLineBytes) std::uint32_t sleepers;
};

enum class SessionState : std::uint32_t { kOpen = 0, kClosed = 1, kViolation = 2, kShutdown = 3 };

// Written by the broker only; the client reads them to learn why a session ended.
struct SessionWords {
  alignas(kLineBytes) std::uint32_t state;  // SessionState
  std::uint32_t violation;  // a ViolationCode of the broker, when state is kViolation
};

inline constexpr std::uint32_t kMaxDevices = 16;
inline constexpr std::uint32_t kDeviceAttributeCount = 148;  // CUdevice_attribute values 0..147 (13.0)

// What a client may know of a device without asking: everything cudaGetDeviceProperties,
// cuDeviceGetAttribute and NVML's discovery calls report, snapshotted by the broker at start-up.
// Every shim answers identity questions from this one record.
struct DeviceRecord {
  char name[256];  // NUL-terminated
  std::uint8_t uuid[16];
  char pci_bus_id[16];  // "0000:XX:00.0", NUL-terminated
  std::uint64_t total_bytes;
  std::int32_t attributes[kDeviceAttributeCount];  // indexed by CUdevice_attribute; 0 when n/a
  std::int32_t ordinal;  // the broker's device ordinal
  std::int32_t reserved;
};

// The devices this session sees, in the order it numbers them (CUDA_VISIBLE_DEVICES applied).
// Written by the broker before the handshake completes; read-only for the client.
struct DeviceTable {
  std::uint32_t count;
  std::int32_t driver_version;  // cuDriverGetVersion
  std::uint32_t simulated;      // 1 when the broker runs the sim driver
  std::uint32_t reserved;
  DeviceRecord devices[kMaxDevices];
};

struct ControlSegment {
  SegmentHeader header;
  SessionWords session;
  Doorbell submitted;    // broker waits for requests; clients ring
  Doorbell slots_freed;  // clients wait for ring space; broker rings
  RequestSlot slots[kRingSlots];
  Mailbox mailboxes[kMailboxes];
  alignas(kLineBytes) DeviceTable devices;
};

// One direction of the staging area: a byte ring the producer fills and the consumer drains.
// Positions are byte counts since the session began; `tail` is written by the producer only,
// `head` by the consumer only, and each side also keeps its own private copy (it never trusts the
// peer's word beyond checking it).
struct PipeControl {
  alignas(kLineBytes) std::uint64_t tail;
  alignas(kLineBytes) std::uint64_t head;
  Doorbell filled;   // consumer waits for bytes; producer rings
  Doorbell drained;  // producer waits for space; consumer rings
};

struct StagingSegment {
  SegmentHeader header;
  PipeControl to_broker;
  PipeControl from_broker;
  // followed by to_broker bytes[pipe_bytes], then from_broker bytes[pipe_bytes]
};

inline constexpr std::size_t staging_segment_bytes(std::uint64_t pipe_bytes) {
  return sizeof(StagingSegment) + 2 * pipe_bytes;
}

// Handshake, over the SOCK_SEQPACKET socket. The Welcome carries the segments as SCM_RIGHTS file
// descriptors in the order control, staging, arena. A Hello with kHelloTraceFile carries one
// descriptor: the process's call trace file (writable, O_APPEND, a regular file), where the broker
// appends the device work it runs for the session (gpubroker/trace/format.h).
enum HelloFlags : std::uint32_t {
  kHelloTraceFile = 1u << 0,
};

struct Hello {
  std::uint64_t magic;  // kHelloMagic
  std::uint32_t version;
  std::uint32_t abi;  // the CUDA ABI the client speaks (12, 13), 0 for a transport-only client
  std::uint64_t fingerprint;
  std::uint32_t pid;
  std::uint32_t flags;  // HelloFlags
  char program[64];           // NUL-terminated, truncated
  char visible_devices[256];  // CUDA_VISIBLE_DEVICES, NUL-terminated, truncated
};

enum class HandshakeStatus : std::int32_t {
  kAccepted = 0,
  kVersionMismatch = 1,
  kFingerprintMismatch = 2,
  kCredentialsRefused = 3,
  kMalformed = 4,
  kBrokerFull = 5,
  kBrokerError = 6,
};

// Which of the broker's limits turned a client away with kBrokerFull (Welcome::limit); each is a
// broker option that raises it (docs/configuration.md).
enum class BrokerLimit : std::uint32_t {
  kNone = 0,
  kSessions = 1,           // --max-sessions: sessions open in total
  kSessionsPerUser = 2,    // --max-sessions-per-user: sessions open by the client's uid
  kHandshakes = 3,         // --max-handshakes: connections that have not finished their hello
  kHandshakesPerUser = 4,  // --max-handshakes-per-user: the same, by the client's uid
  kDescriptors = 5,        // the broker ran out of file descriptors (its RLIMIT_NOFILE)
};

struct Welcome {
  std::uint64_t magic;  // kWelcomeMagic
  std::uint32_t version;
  std::int32_t status;  // HandshakeStatus
  std::uint64_t fingerprint;
  std::uint64_t session_id;
  std::uint64_t control_bytes;
  std::uint64_t staging_bytes;
  std::uint64_t arena_bytes;
  std::uint64_t pipe_bytes;
  std::uint32_t broker_pid;
  std::uint32_t limit;  // BrokerLimit, with status kBrokerFull
};

namespace detail {
constexpr std::uint64_t fnv1a(std::uint64_t hash, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) {
    hash ^= (value >> (8 * i)) & 0xff;
    hash *= 0x100000001b3ull;
  }
  return hash;
}
}  // namespace detail

// A hash of every size and offset of the segments and the handshake messages that a peer relies
// on. Both sides compute it at compile time. It covers no request shapes: a protocol's fingerprint
// (below) continues it over the shape table, and that is what a session's peers compare. The stats
// file (stats.h), whose layout does not depend on the call tables, carries this one.
constexpr std::uint64_t layout_fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const std::uint64_t facts[] = {
      kProtocolVersion, kLineBytes, kSlotBytes, kRingSlots, kMailboxes,
      sizeof(SegmentHeader), sizeof(Doorbell), offsetof(Doorbell, sleepers),
      sizeof(SessionWords), sizeof(RequestHeader), offsetof(RequestHeader, device), offsetof(RequestHeader, staged_bytes),
      sizeof(RequestSlot), sizeof(Mailbox), offsetof(Mailbox, result), offsetof(Mailbox, sleepers),
      sizeof(ControlSegment), offsetof(ControlSegment, slots), offsetof(ControlSegment, mailboxes),
      offsetof(ControlSegment, devices), sizeof(DeviceRecord), sizeof(DeviceTable),
      sizeof(PipeControl), offsetof(PipeControl, head), offsetof(PipeControl, filled),
      sizeof(StagingSegment), sizeof(Hello), sizeof(Welcome)};
  for (std::uint64_t f : facts) h = detail::fnv1a(h, f);
  return h;
}

inline constexpr std::uint64_t kLayoutFingerprint = layout_fingerprint();

// The layout fingerprint continued over every shape of a table (kind, payload bounds, reply size,
// staging way, posting): a client and a broker built from tables that differ in any of them, or
// in the layouts, refuse each other at the handshake instead of misreading requests.
constexpr std::uint64_t protocol_fingerprint(std::span<const RequestShape> shapes) {
  std::uint64_t h = kLayoutFingerprint;
  for (const RequestShape& s : shapes) {
    h = detail::fnv1a(h, s.kind);
    h = detail::fnv1a(h, s.min_payload);
    h = detail::fnv1a(h, s.max_payload);
    h = detail::fnv1a(h, s.reply_bytes);
    h = detail::fnv1a(h, static_cast<std::uint64_t>(s.staging));
    h = detail::fnv1a(h, static_cast<std::uint64_t>(s.posting));
  }
  return h;
}

// The request kinds a session speaks, as the transport needs them: the shape of each kind, indexed
// by kind, and the fingerprint its peers compare at the handshake and in each segment header. The
// transport knows only its own (kTransportProtocol); whoever runs it with more kinds hands it the
// larger one (gpubroker/calls' wire::kProtocol: the broker in its ListenerOptions, the shims in
// their ClientOptions). `shapes` refers to a table of static storage.
struct Protocol {
  std::span<const RequestShape> shapes;
  std::uint64_t fingerprint = 0;

  // The shape of a kind, or nullptr for a value outside the table.
  [[nodiscard]] constexpr const RequestShape* shape_of(std::uint16_t kind) const {
    return kind < shapes.size() ? &shapes[kind] : nullptr;
  }

  // Whether the table is one the transport can index: not empty, row i the shape of kind i.
  [[nodiscard]] constexpr bool indexed_by_kind() const {
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      if (shapes[i].kind != i) return false;
    }
    return !shapes.empty();
  }
};

inline constexpr Protocol kTransportProtocol{kTransportShapes, protocol_fingerprint(kTransportShapes)};
static_assert(kTransportProtocol.indexed_by_kind());

}  // namespace gpubroker::wire
