// A session's device memory and its pinned host-arena ranges, and every copy and memset.
//
// Copies move in one of three ways (DESIGN.md): between the host arena and the device directly
// (the arena range is registered with the driver: no CPU copy anywhere), through the staging
// pipes (pageable memory: one CPU copy in each process), or device to device as one message.
// Every device range a copy or memset touches is checked against the session's memory first.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "broker/call.h"
#include "broker/owned.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionMemory {
 public:
  explicit SessionMemory(DeviceSession& session);

  // Whether [pointer, pointer + bytes) lies inside one of the session's cuMemAlloc allocations.
  [[nodiscard]] bool owns_allocation(std::uint64_t pointer, std::uint64_t bytes) const;
  // The serial of the allocation holding all of [pointer, pointer + bytes), or 0.
  [[nodiscard]] std::uint64_t serial_of(std::uint64_t pointer, std::uint64_t bytes) const;
  // The device of the allocation holding `pointer`, if one does.
  [[nodiscard]] std::optional<std::uint32_t> device_of(std::uint64_t pointer) const;
  [[nodiscard]] std::uint64_t pinned_bytes() const { return pinned_bytes_; }

  // A pipe transfer between staged bytes and device memory laid out as `runs` runs of
  // `run_bytes` bytes, `pitch` bytes apart, from `pointer` (one run: a plain copy; a matrix:
  // one run per column). The caller has checked the device range; the staged bytes always flow,
  // even when the copy fails, so that the pipe stays in step. Completes the request itself.
  struct StagedTransfer {
    std::uint64_t pointer;
    std::uint64_t run_bytes;
    std::uint64_t pitch;
    std::uint64_t stream;  // the session's stream id
    bool to_device;
    int failure_status;  // what the call reports when a driver step fails (a CUresult, or a cublasStatus_t)
    int refusal;         // nonzero: refuse the call with it (the bytes still flow)
  };
  Outcome<wire::NoReply> transfer_staged(CallContext& call, const StagedTransfer& transfer);

  // ---- Handlers (rows of area `memory`) ----
  Outcome<wire::PointerResult> allocate(CallContext& call, const wire::MemAllocRequest& request);
  Outcome<wire::NoReply> free(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::MemInfoResult> info(CallContext& call, const wire::DeviceRequest& request);
  Outcome<wire::NoReply> memset(CallContext& call, const wire::MemsetRequest& request);
  Outcome<wire::NoReply> copy_from_staging(CallContext& call, const wire::CopyRequest& request);
  Outcome<wire::NoReply> copy_to_staging(CallContext& call, const wire::CopyRequest& request);
  Outcome<wire::NoReply> copy_device(CallContext& call, const wire::CopyRequest& request);
  Outcome<wire::NoReply> copy_from_arena(CallContext& call, const wire::CopyRequest& request);
  Outcome<wire::NoReply> copy_to_arena(CallContext& call, const wire::CopyRequest& request);
  Outcome<wire::NoReply> register_arena(CallContext& call, const wire::ArenaRange& range);
  Outcome<wire::NoReply> unregister_arena(CallContext& call, const wire::ArenaRange& range);

 private:
  struct PendingRelease {
    DeferredFrees::Ticket ticket;
    std::uint64_t bytes;
  };
  // Frees a cuMemAlloc allocation and counts it out of the session's and the broker's totals.
  struct FreeDeviceMemory {
    DeviceSession* session;
    std::uint32_t device;
    std::uint64_t bytes;
    std::vector<PendingRelease>* pending;  // the device's entry of pending_releases_
    int operator()(cuda::CUdeviceptr pointer) const;
  };
  struct Allocation {
    std::uint64_t bytes;
    std::uint32_t device;
    std::uint64_t serial;  // DeviceSession::new_memory_serial()
    Owned<cuda::CUdeviceptr, FreeDeviceMemory> owner;
  };
  struct PinnedRange {
    std::uint64_t bytes;
    Owned<void*, UnregisterHost> owner;
  };
  Outcome<wire::NoReply> copy_arena(CallContext& call, const wire::CopyRequest& copy, bool to_device);
  Outcome<wire::NoReply> copy_staged(CallContext& call, const wire::CopyRequest& copy, bool to_device);
  void pin_staging(ipc::ServerSession& session);

  DeviceSession& session_;
  // Released last (after the allocations): the pipes' own registration.
  std::optional<Owned<void*, UnregisterHost>> staging_pin_;
  bool staging_tried_ = false;
  std::map<std::uint64_t, PinnedRange> arena_ranges_;  // registered, by arena offset
  std::uint64_t pinned_bytes_ = 0;
  // By device: what the session freed that the driver may not have released yet (cudaMemGetInfo
  // counts it as free). Outlives allocations_, whose destruction adds to it.
  std::vector<std::vector<PendingRelease>> pending_releases_;
  std::map<std::uint64_t, Allocation> allocations_;  // by device address
  // Staged copies keep this many pipe chunks in flight, each followed by an event of its own.
  static constexpr unsigned kStagingWindow = 8;
  std::vector<std::vector<OwnedEvent>> staging_events_;  // by device: kStagingWindow + 1, made on first use
};

// Bytes a column-major rows x cols matrix with leading dimension `ld` spans; UINT64_MAX (which no
// session owns) when that does not fit in 64 bits.
std::uint64_t matrix_bytes(std::int64_t ld, std::int64_t rows, std::int64_t cols, std::uint64_t element);

// Bytes from the first of `batch` matrices `stride` elements apart to the end of the last, each
// spanning `one` bytes; UINT64_MAX when a negative stride or the arithmetic would wrap.
std::uint64_t batch_bytes(std::int64_t stride, std::uint64_t one, std::uint64_t element, std::int64_t batch);

// The entry of `ranges` (start address -> an entry with a `bytes` member) that holds all of
// [pointer, pointer + bytes), or nullptr.
template <class Map>
const typename Map::mapped_type* entry_holding(const Map& ranges, std::uint64_t pointer, std::uint64_t bytes) {
  auto it = ranges.upper_bound(pointer);
  if (it == ranges.begin()) return nullptr;
  --it;
  const std::uint64_t offset = pointer - it->first;
  return offset <= it->second.bytes && bytes <= it->second.bytes - offset ? &it->second : nullptr;
}

template <class Map>
bool inside_one(const Map& ranges, std::uint64_t pointer, std::uint64_t bytes) {
  return entry_holding(ranges, pointer, bytes) != nullptr;
}

}  // namespace gpubroker::broker
