#include "shim/client/operations.h"

#include <atomic>
#include <cstring>

namespace gpubroker::shim {

namespace {

constexpr int kInvalidValue = 1;  // CUDA_ERROR_INVALID_VALUE, cudaErrorInvalidValue
constexpr int kOutOfMemory = 2;   // CUDA_ERROR_OUT_OF_MEMORY, cudaErrorMemoryAllocation

std::atomic<std::uint64_t> g_next_object{0x100};
// Relaxed: nothing else is published with it.
std::atomic<int> g_sticky{0};

}  // namespace

void MemoryMap::add_device(std::uint64_t pointer, std::uint64_t bytes, int device) {
  std::lock_guard guard(lock_);
  device_[pointer] = Device{bytes, device};
}

std::optional<std::uint64_t> MemoryMap::remove_device(std::uint64_t pointer) {
  std::lock_guard guard(lock_);
  auto it = device_.find(pointer);
  if (it == device_.end()) return std::nullopt;
  const std::uint64_t bytes = it->second.bytes;
  device_.erase(it);
  return bytes;
}

bool MemoryMap::is_device(const void* pointer) const { return device_of(pointer).has_value(); }

std::optional<int> MemoryMap::device_of(const void* pointer) const {
  const auto address = reinterpret_cast<std::uint64_t>(pointer);
  std::lock_guard guard(lock_);
  auto it = device_.upper_bound(address);
  if (it == device_.begin()) return std::nullopt;
  --it;
  if (address - it->first >= it->second.bytes) return std::nullopt;
  return it->second.device;
}

std::vector<std::uint64_t> MemoryMap::device_allocations(int device) const {
  std::lock_guard guard(lock_);
  std::vector<std::uint64_t> bases;
  for (const auto& [base, allocation] : device_) {
    if (allocation.device == device) bases.push_back(base);
  }
  return bases;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> MemoryMap::device_range(std::uint64_t pointer) const {
  std::lock_guard guard(lock_);
  auto it = device_.upper_bound(pointer);
  if (it == device_.begin()) return std::nullopt;
  --it;
  if (pointer - it->first >= it->second.bytes) return std::nullopt;
  return std::pair{it->first, it->second.bytes};
}

void MemoryMap::add_pinned(const void* pointer, std::uint64_t offset, std::uint64_t bytes) {
  std::lock_guard guard(lock_);
  pinned_[reinterpret_cast<std::uintptr_t>(pointer)] = Pinned{offset, bytes};
}

std::optional<std::uint64_t> MemoryMap::remove_pinned(const void* pointer) {
  std::lock_guard guard(lock_);
  auto it = pinned_.find(reinterpret_cast<std::uintptr_t>(pointer));
  if (it == pinned_.end()) return std::nullopt;
  const std::uint64_t offset = it->second.offset;
  pinned_.erase(it);
  return offset;
}

std::optional<std::uint64_t> MemoryMap::pinned_offset(const void* pointer, std::uint64_t bytes) const {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  std::lock_guard guard(lock_);
  auto it = pinned_.upper_bound(address);
  if (it == pinned_.begin()) return std::nullopt;
  --it;
  const std::uint64_t into = address - it->first;
  if (into > it->second.bytes || bytes > it->second.bytes - into) return std::nullopt;
  return it->second.offset + into;
}

MemoryMap& memory() {
  static MemoryMap* map = new MemoryMap();  // never destroyed: calls may come during exit
  return *map;
}

std::uint64_t new_object_id() { return g_next_object.fetch_add(1, std::memory_order_relaxed); }

int sticky_error() { return g_sticky.load(std::memory_order_relaxed); }

bool make_sticky(int status) {
  int none = 0;
  return g_sticky.compare_exchange_strong(none, status, std::memory_order_relaxed);
}

namespace ops {

int copy(Connection& c, void* destination, const void* source, std::size_t bytes, Direction direction,
         std::uint64_t stream, bool asynchronous) {
  if (bytes == 0) return 0;
  if (destination == nullptr || source == nullptr) return kInvalidValue;
  MemoryMap& map = memory();
  if (direction == Direction::kDefault) {
    const bool to_device = map.is_device(destination), from_device = map.is_device(source);
    direction = to_device ? (from_device ? Direction::kDeviceToDevice : Direction::kHostToDevice)
                          : (from_device ? Direction::kDeviceToHost : Direction::kHostToHost);
  }
  const auto dst = reinterpret_cast<std::uint64_t>(destination);
  const auto src = reinterpret_cast<std::uint64_t>(source);
  switch (direction) {
    case Direction::kHostToHost:
      std::memmove(destination, source, bytes);
      return 0;
    case Direction::kHostToDevice:
      if (auto offset = map.pinned_offset(source, bytes)) {
        const wire::CopyRequest r{dst, *offset, bytes, stream};
        return asynchronous ? post<wire::RequestKind::kCopyArenaToDevice>(c, r)
                            : request<wire::RequestKind::kCopyArenaToDevice>(c, r);
      }
      return request<wire::RequestKind::kCopyHostToDevice>(c, wire::CopyRequest{dst, 0, bytes, stream},
                                                           std::span(static_cast<const std::byte*>(source), bytes));
    case Direction::kDeviceToHost:
      if (auto offset = map.pinned_offset(destination, bytes)) {
        const wire::CopyRequest r{*offset, src, bytes, stream};
        return asynchronous ? post<wire::RequestKind::kCopyDeviceToArena>(c, r)
                            : request<wire::RequestKind::kCopyDeviceToArena>(c, r);
      }
      return request<wire::RequestKind::kCopyDeviceToHost>(c, wire::CopyRequest{0, src, bytes, stream},
                                                           std::span(static_cast<std::byte*>(destination), bytes));
    default:  // device to device: no host-side synchronization, as in CUDA
      return post<wire::RequestKind::kCopyDeviceToDevice>(c, wire::CopyRequest{dst, src, bytes, stream});
  }
}

int memset(Connection& c, std::uint64_t pointer, std::uint32_t value, std::size_t count, std::uint32_t element_bytes,
           std::uint64_t stream) {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(count, element_bytes, &bytes)) return kInvalidValue;
  if (bytes == 0) return 0;
  return post<wire::RequestKind::kMemset>(c, wire::MemsetRequest{pointer, bytes, stream, value, element_bytes});
}

int allocate(Connection& c, std::size_t bytes, std::uint64_t& pointer) {
  ReplyOf<wire::RequestKind::kMemAlloc> reply{};
  const int status = request<wire::RequestKind::kMemAlloc>(c, wire::MemAllocRequest{c.current_ordinal(), 0, bytes}, &reply);
  if (status != 0) return status;
  pointer = reply.pointer;
  if (pointer != 0) memory().add_device(pointer, bytes, Connection::current_device());
  return 0;
}

int free(Connection& c, std::uint64_t pointer) {
  if (!memory().remove_device(pointer)) return kInvalidValue;
  return request<wire::RequestKind::kMemFree>(c, wire::HandleRequest{pointer});
}

int allocate_pinned(Connection& c, std::size_t bytes, void*& pointer) {
  auto block = c.session().arena().allocate(bytes);
  if (!block) return kOutOfMemory;
  const std::uint64_t offset = *c.session().arena().offset_of(block.value(), bytes);
  // The broker registers the range with the driver, so that copies from it are direct transfers.
  const std::uint64_t registered = bytes == 0 ? 1 : bytes;
  if (const int status = request<wire::RequestKind::kArenaRegister>(c, wire::ArenaRange{offset, registered}); status != 0) {
    c.session().arena().free(block.value());
    return status;
  }
  memory().add_pinned(block.value(), offset, registered);
  pointer = block.value();
  return 0;
}

int free_pinned(Connection& c, void* pointer) {
  const auto offset = memory().remove_pinned(pointer);
  if (!offset) return kInvalidValue;
  hold_for_all_host_funcs();
  int synchronized = 0;
  const int previous = Connection::current_device();
  for (std::size_t device = 0; device < c.visible().size(); ++device) {
    Connection::set_current_device(static_cast<int>(device));
    const int status = request<wire::RequestKind::kContextSynchronize>(c, {});
    if (synchronized == 0) synchronized = status;
  }
  Connection::set_current_device(previous);
  const int status = request<wire::RequestKind::kArenaUnregister>(c, wire::ArenaRange{*offset, 0});
  c.session().arena().free(pointer);
  return synchronized != 0 ? synchronized : status;
}

bool add_launch_attribute(int id, int value, std::uint8_t& flags) {
  constexpr int kIgnore = 0, kCooperative = 2, kProgrammaticStreamSerialization = 6, kPriority = 8;
  switch (id) {
    case kIgnore:
    case kPriority:
      return true;
    case kCooperative:
      if (value != 0) flags |= wire::kLaunchCooperative;
      return true;
    case kProgrammaticStreamSerialization:
      if (value != 0) flags |= wire::kLaunchProgrammaticSerialization;
      return true;
    default:
      return false;
  }
}

int launch(Connection& c, const wire::LaunchRequest& header, std::span<const std::byte> params) {
  if (params.size() <= wire::kInlineParamBytes) return post<wire::RequestKind::kLaunchKernel>(c, header, params);
  return request<wire::RequestKind::kLaunchKernelStaged>(c, header, params);
}

int reset_device(Connection& c) {
  hold_for_all_host_funcs();
  int status = request<wire::RequestKind::kContextSynchronize>(c, {});
  for (const std::uint64_t base : memory().device_allocations(Connection::current_device())) {
    if (const int freed = free(c, base); status == 0) status = freed;
  }
  return status;
}

int create_stream(Connection& c, unsigned flags, int priority, std::uint64_t& stream) {
  const std::uint64_t id = new_object_id();
  const int status = post<wire::RequestKind::kStreamCreate>(c, wire::StreamCreateRequest{id, flags, priority});
  if (status == 0) stream = id;
  return status;
}

int create_event(Connection& c, unsigned flags, std::uint64_t& event) {
  const std::uint64_t id = new_object_id();
  const int status = post<wire::RequestKind::kEventCreate>(c, wire::EventCreateRequest{id, flags, 0});
  if (status == 0) event = id;
  return status;
}

}  // namespace ops

}  // namespace gpubroker::shim
