// A session's share of the driver's virtual memory management (the libcuda.so.1 shim's pool):
// its reserved address ranges, its physical allocations (by the session-local id the client
// holds) and its mappings. Mapped ranges with access granted count as the session's memory for
// copies, memsets, launches and GEMMs. Destroying it unmaps, releases and gives the address
// ranges back, after the session's streams are done.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "broker/call.h"
#include "broker/device_context.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionVmm {
 public:
  explicit SessionVmm(DeviceSession& session);
  SessionVmm(const SessionVmm&) = delete;
  SessionVmm& operator=(const SessionVmm&) = delete;
  ~SessionVmm();

  // True when [pointer, pointer + bytes) lies in the session's mappings, back to back, and (when
  // `accessible_only`) every one of them has had access granted.
  [[nodiscard]] bool covers(std::uint64_t pointer, std::uint64_t bytes, bool accessible_only) const;
  // The device of the physical memory mapped at `pointer`, if the session maps any there.
  [[nodiscard]] std::optional<std::uint32_t> device_of(std::uint64_t pointer) const;
  // A serial for the accessible mappings that hold [pointer, pointer + bytes) back to back (one
  // mapping's own, or a mix of several), or 0 where covers() would refuse the range.
  [[nodiscard]] std::uint64_t serial_of(std::uint64_t pointer, std::uint64_t bytes) const;

  // ---- Handlers (rows of area `vmm`) ----
  Outcome<std::uint64_t> granularity(CallContext& call, const wire::VmmGranularityRequest& request);
  Outcome<wire::PointerResult> reserve(CallContext& call, const wire::VmmReserveRequest& request);
  Outcome<wire::NoReply> free_address(CallContext& call, const wire::VmmRangeRequest& request);
  Outcome<std::uint64_t> create(CallContext& call, const wire::VmmCreateRequest& request);
  Outcome<wire::NoReply> release(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> map(CallContext& call, const wire::VmmMapRequest& request);
  Outcome<wire::NoReply> unmap(CallContext& call, const wire::VmmRangeRequest& request);
  Outcome<wire::NoReply> set_access(CallContext& call, const wire::VmmAccessRequest& request);

 private:
  // Each remembers the context it was made in, where it is given back.
  struct Reservation {
    std::uint64_t bytes;
    const DeviceContext* context;
  };
  struct Allocation {
    cuda::CUmemGenericAllocationHandle handle;
    std::uint64_t bytes;
    const DeviceContext* context;  // of the device whose memory it is
    std::uint32_t mappings = 0;
    bool released = false;  // the client's id is gone; the memory lives while mapped
  };
  struct Mapping {
    std::uint64_t bytes;
    std::uint64_t allocation;  // id in allocations_
    const DeviceContext* context;
    std::uint64_t serial;  // DeviceSession::new_memory_serial()
    bool accessible = false;
  };
  [[nodiscard]] cuda::CUmemAllocationProp device_prop(std::uint32_t device) const;
  // Whether one reservation holds all of [pointer, pointer + size).
  [[nodiscard]] bool reservation_holding(std::uint64_t pointer, std::uint64_t size) const;
  // The mappings that make up exactly [pointer, pointer + size), back to back.
  bool whole_mappings(std::uint64_t pointer, std::uint64_t size, std::vector<std::uint64_t>& found) const;
  void forget_allocation(std::uint64_t id);  // once released and unmapped everywhere

  DeviceSession& session_;
  std::map<std::uint64_t, Reservation> reservations_;   // by address
  std::map<std::uint64_t, Allocation> allocations_;      // by id
  std::map<std::uint64_t, Mapping> mappings_;            // by address
  std::uint64_t next_allocation_ = 1;
  std::uint64_t reserved_bytes_ = 0;
  // What one session may hold, so that no client can exhaust the broker's address space or its
  // kernel mapping count (vm.max_map_count) for the others. ggml reserves 32 GiB per device and
  // maps it in granules of at least 2 MiB.
  static constexpr std::uint64_t kMaxReservedBytes = 1ull << 42;  // 4 TiB
  static constexpr std::size_t kMaxReservations = 1024;
  static constexpr std::size_t kMaxMappings = 16384;
};

}  // namespace gpubroker::broker
