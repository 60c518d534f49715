// libFuzzer entry point for the broker's request path: ServerSession::validate, then the device
// handlers of DeviceSession (and the transport handler for the transport kinds), on the sim
// device, exactly as the broker's dispatch loop runs them. Whatever the slots say, the broker
// must return a completion, an error or a violation, never crash, leak or read out of bounds;
// and once the session is reclaimed it must hold nothing (checked after every input).
//
// Input: up to 16 request slots of wire::kSlotBytes each (header and inline payload, exactly as
// a client writes them into its ring; `sequence` is ignored), then the bytes the client staged
// for the broker (the to-broker pipe is filled with them, repeated, before the first request).
// Each input gets a fresh session (real segments and a real handshake over the socket).
//
// Device addresses are not known in advance, so a payload word 0x5EED'00II'OOOO'OOOO (any
// 8-byte-aligned word with 0x5EED in its top 16 bits) is replaced by the II-th address the session
// got from kMemAlloc or kVmmAddressReserve, plus the offset O: the fuzzer reaches the paths where
// pointers are the session's own, not only the refusals.
//
// Built with clang (tests/fuzz/meson.build); run by hand:
//   build/tests/fuzz/request_fuzz -max_total_time=60 -max_len=65536 /tmp/request_corpus tests/fuzz/request_corpus
// Environment: GPUBROKER_SIM_LIBRARY (the sim driver), as the broker's tests use it.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>
#include <string>
#include <thread>

#include "broker/device_layer.h"
#include "broker/session.h"
#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "ipc/log.h"
#include "ipc/server_session.h"
#include "ipc/staging_pipe.h"
#include "ipc/transport_service.h"

using namespace gpubroker;

namespace {

constexpr std::uint64_t kPipeBytes = 1ull << 20;
constexpr std::size_t kMaxSlots = 16;

struct Harness {
  std::unique_ptr<broker::DeviceLayer> device;
  std::optional<ipc::Listener> listener;
  std::string socket_path;
  broker::BrokerCounters counters;
};

Harness& harness() {
  static Harness* h = [] {
    auto* made = new Harness;
    ipc::set_log_level(ipc::LogLevel::kError);
    const char* sim = std::getenv("GPUBROKER_SIM_LIBRARY");
    auto device = broker::DeviceLayer::open(broker::DriverChoice::kSim, sim != nullptr ? sim : "");
    if (!device) {
      std::fprintf(stderr, "request_fuzz: no sim driver (set GPUBROKER_SIM_LIBRARY): %s\n", device.error().detail.c_str());
      std::abort();
    }
    made->device = std::move(device.value());
    char dir[] = "/tmp/gpubroker-fuzz-XXXXXX";
    if (::mkdtemp(dir) == nullptr) std::abort();
    made->socket_path = std::string(dir) + "/broker.sock";
    ipc::ListenerOptions options;
    options.socket_path = made->socket_path;
    options.protocol = wire::kProtocol;  // gpu-broker's
    options.pipe_bytes = kPipeBytes;
    options.arena_bytes = 4ull << 20;
    auto listener = ipc::Listener::bind(options);
    if (!listener) std::abort();
    made->listener.emplace(std::move(listener.value()));
    return made;
  }();
  return *h;
}

constexpr std::uint64_t kRelocationTag = 0x5EEDull << 48;

// Replaces tagged payload words by the session's own addresses (see the top of the file).
void relocate(wire::RequestSlot& slot, const std::vector<std::uint64_t>& addresses) {
  if (addresses.empty()) return;
  for (std::size_t at = 0; at + 8 <= sizeof slot.payload; at += 8) {
    std::uint64_t word;
    std::memcpy(&word, slot.payload + at, 8);
    if ((word & 0xFFFF'0000'0000'0000ull) != kRelocationTag) continue;
    word = addresses[((word >> 40) & 0xff) % addresses.size()] + (word & 0xFF'FFFF'FFFFull);
    std::memcpy(slot.payload + at, &word, 8);
  }
}

bool holds_nothing(const broker::BrokerCounters& c) {
  return c.device_bytes == 0 && c.allocations == 0 && c.streams == 0 && c.events == 0 && c.arena_registrations == 0 &&
         c.graphs == 0 && c.modules == 0 && c.blas_handles == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Harness& h = harness();
  const std::size_t slots = std::min(size / wire::kSlotBytes, kMaxSlots);
  const std::span<const std::uint8_t> staged(data + slots * wire::kSlotBytes, size - slots * wire::kSlotBytes);

  // A fresh session: the client connects on a thread while this one accepts.
  std::unique_ptr<ipc::ClientSession> client;
  std::thread connecting([&] {
    ipc::ClientOptions options;
    options.socket_path = h.socket_path;
    options.protocol = wire::kProtocol;
    options.program = "request-fuzz";
    auto connected = ipc::ClientSession::connect(options);
    if (connected) client = std::move(connected.value());
  });
  auto accepted = h.listener->accept(std::chrono::milliseconds(5000));
  connecting.join();
  if (!accepted || !client) std::abort();
  ipc::ServerSession& server = *accepted.value();

  // The client's staged bytes, already in the pipe (less than its capacity: no waiting).
  if (!staged.empty()) {
    ipc::PipeWriter writer(ipc::to_broker_pipe(reinterpret_cast<wire::StagingSegment*>(client->staging_bytes().data()),
                                               kPipeBytes));
    std::uint64_t at = 0;
    const auto filled = writer.write(
        kPipeBytes - ipc::kStagingChunkBytes,
        [&](std::span<std::byte> piece) {
          for (std::byte& b : piece) b = std::byte(staged[at++ % staged.size()]);
        },
        ipc::PeerCheck{[](const void*) { return true; }, nullptr}, ipc::WaitPolicy::of(ipc::WaitMode::kSpin));
    if (!filled) std::abort();
  }
  // Waits that would need more from the client give up at once: the broker is "stopping". The
  // session learns the stop flag in a wait for a request; a kNull already in the ring ends that
  // wait at once.
  auto* ring = reinterpret_cast<wire::ControlSegment*>(client->control_bytes().data());
  ring->slots[0].header.kind = static_cast<std::uint16_t>(wire::RequestKind::kNull);
  std::atomic_ref(ring->slots[0].header.sequence).store(1, std::memory_order_release);
  std::atomic<bool> stop{true};
  (void)server.wait_for_request(ipc::WaitPolicy::of(ipc::WaitMode::kSpin), stop);
  wire::RequestSlot null_request;
  if (!server.try_next(null_request)) std::abort();

  {
    broker::DeviceSession device(*h.device, h.device->contexts_for(broker::Isolation::kNone, 0).value(),
                                 broker::SessionLimits{64ull << 20}, h.counters);
    ipc::RequestHandler transport = ipc::make_transport_handler(ipc::TransportKinds::kProduction);  // as the broker
    const auto* control = reinterpret_cast<const wire::ControlSegment*>(client->control_bytes().data());
    std::vector<std::uint64_t> addresses;
    for (std::size_t i = 0; i < slots; ++i) {
      wire::RequestSlot slot;
      std::memcpy(&slot, data + i * wire::kSlotBytes, sizeof slot);
      relocate(slot, addresses);
      if (server.validate(slot) != ipc::ViolationCode::kNone) break;  // the session would be closed
      const auto handled = slot.header.kind < static_cast<std::uint16_t>(wire::RequestKind::kMemAlloc)
                               ? transport(server, slot)
                               : device.handle(server, slot);
      if (!handled) break;  // a violation or the peer gone: the session ends either way
      const auto kind = static_cast<wire::RequestKind>(slot.header.kind);
      if ((kind == wire::RequestKind::kMemAlloc || kind == wire::RequestKind::kVmmAddressReserve) &&
          (slot.header.flags & wire::kSynchronous) != 0) {
        const wire::Mailbox& mailbox = control->mailboxes[slot.header.mailbox % wire::kMailboxes];
        std::uint64_t address = 0;
        std::memcpy(&address, mailbox.result, sizeof address);
        if (mailbox.status == 0 && mailbox.result_bytes >= sizeof address && address != 0) addresses.push_back(address);
      }
    }
  }  // reclaims everything the session held
  if (!holds_nothing(h.counters)) {
    std::fprintf(stderr, "request_fuzz: the reclaimed session left objects behind\n");
    std::abort();
  }
  server.close(wire::SessionState::kClosed);
  accepted.value().reset();
  client.reset();
  return 0;
}
