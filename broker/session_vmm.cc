#include "broker/session_vmm.h"

#include <iterator>

#include "broker/session.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_ERROR_OUT_OF_MEMORY;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

static_assert(sizeof(wire::VmmReserveRequest) == 32 && sizeof(wire::VmmCreateRequest) == 24 &&
              sizeof(wire::VmmMapRequest) == 40 && sizeof(wire::VmmAccessRequest) == 72 &&
              sizeof(wire::VmmGranularityRequest) == 8 && sizeof(wire::VmmRangeRequest) == 16);

}  // namespace

SessionVmm::SessionVmm(DeviceSession& session) : session_(session) {}

SessionVmm::~SessionVmm() {
  for (const auto& [address, mapping] : mappings_) mapping.context->mem_unmap(address, mapping.bytes);
  mappings_.clear();
  for (auto& [id, allocation] : allocations_) {
    if (!allocation.released) allocation.context->mem_release(allocation.handle);
    allocation.released = true;
    allocation.mappings = 0;
  }
  while (!allocations_.empty()) forget_allocation(allocations_.begin()->first);
  for (const auto& [address, reservation] : reservations_) reservation.context->mem_address_free(address, reservation.bytes);
}

bool SessionVmm::covers(std::uint64_t pointer, std::uint64_t bytes, bool accessible_only) const {
  auto it = mappings_.upper_bound(pointer);
  if (it == mappings_.begin()) return false;
  --it;
  if (pointer - it->first >= it->second.bytes || pointer + bytes < pointer) return false;
  const std::uint64_t end = pointer + bytes;
  for (;;) {
    if (accessible_only && !it->second.accessible) return false;
    const std::uint64_t mapped_end = it->first + it->second.bytes;
    if (end <= mapped_end) return true;
    auto next = std::next(it);
    if (next == mappings_.end() || next->first != mapped_end) return false;
    it = next;
  }
}

std::uint64_t SessionVmm::serial_of(std::uint64_t pointer, std::uint64_t bytes) const {
  if (!covers(pointer, bytes, true)) return 0;
  std::uint64_t serial = 0;
  for (auto it = std::prev(mappings_.upper_bound(pointer)); it != mappings_.end() && it->first < pointer + bytes; ++it) {
    serial = serial * 0x9E3779B97F4A7C15ull + it->second.serial;  // in order: no two sets of mappings mix alike
  }
  return serial == 0 ? 1 : serial;
}

std::optional<std::uint32_t> SessionVmm::device_of(std::uint64_t pointer) const {
  auto it = mappings_.upper_bound(pointer);
  if (it == mappings_.begin()) return std::nullopt;
  --it;
  if (pointer - it->first >= it->second.bytes) return std::nullopt;
  return allocations_.at(it->second.allocation).context->ordinal();
}

void SessionVmm::forget_allocation(std::uint64_t id) {
  auto it = allocations_.find(id);
  if (it == allocations_.end() || !it->second.released || it->second.mappings != 0) return;
  session_.uncount_device_bytes(it->second.context->ordinal(), it->second.bytes);
  session_.counters().allocations.fetch_sub(1, std::memory_order_relaxed);
  allocations_.erase(it);
}

cuda::CUmemAllocationProp SessionVmm::device_prop(std::uint32_t device) const {
  cuda::CUmemAllocationProp prop{};
  prop.type = cuda::CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = session_.device().devices().devices[device].ordinal;
  return prop;
}

bool SessionVmm::reservation_holding(std::uint64_t pointer, std::uint64_t size) const {
  auto it = reservations_.upper_bound(pointer);
  if (it == reservations_.begin() || pointer + size < pointer) return false;
  --it;
  return pointer - it->first <= it->second.bytes && size <= it->second.bytes - (pointer - it->first);
}

bool SessionVmm::whole_mappings(std::uint64_t pointer, std::uint64_t size, std::vector<std::uint64_t>& found) const {
  if (size == 0 || pointer + size < pointer) return false;
  std::uint64_t position = pointer;
  for (auto it = mappings_.find(pointer); it != mappings_.end() && it->first == position; ++it) {
    found.push_back(it->first);
    position += it->second.bytes;
    if (position >= pointer + size) break;
  }
  return position == pointer + size;
}

Outcome<std::uint64_t> SessionVmm::granularity(CallContext&, const wire::VmmGranularityRequest& g) {
  if (g.device >= session_.device().devices().count) return CallError{cuda::CUDA_ERROR_INVALID_DEVICE};
  const cuda::CUmemAllocationProp prop = device_prop(g.device);
  std::size_t granularity = 0;
  const CUresult r = session_.context(g.device).mem_get_allocation_granularity(&granularity, &prop, g.option);
  return answer(r, static_cast<std::uint64_t>(granularity));
}

// A mapping is the process's, visible to every context of the broker on that device: with
// contexts per user (--isolation=uid) it would cross the boundary, so none is made; the device
// says it has no VMM (broker/main.cc), as a device without it would.
Outcome<wire::PointerResult> SessionVmm::reserve(CallContext&, const wire::VmmReserveRequest& v) {
  if (session_.isolated()) return CallError{cuda::CUDA_ERROR_NOT_SUPPORTED};
  if (v.size == 0) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (v.size > kMaxReservedBytes - reserved_bytes_ || reservations_.size() >= kMaxReservations) {
    return CallError{CUDA_ERROR_OUT_OF_MEMORY};
  }
  const DeviceContext& context = session_.current_context();
  cuda::CUdeviceptr address = 0;
  if (CUresult r = context.mem_address_reserve(&address, v.size, v.alignment, v.hint, v.flags); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  reservations_[address] = Reservation{v.size, &context};
  reserved_bytes_ += v.size;
  return wire::PointerResult{address};
}

Outcome<wire::NoReply> SessionVmm::free_address(CallContext&, const wire::VmmRangeRequest& v) {
  auto it = reservations_.find(v.pointer);
  if (it == reservations_.end() || it->second.bytes != v.size) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto mapped = mappings_.lower_bound(v.pointer);
  if (mapped != mappings_.end() && mapped->first - v.pointer < v.size) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (CUresult r = it->second.context->mem_address_free(v.pointer, v.size); r != CUDA_SUCCESS) return CallError{r};
  reserved_bytes_ -= it->second.bytes;
  reservations_.erase(it);
  return wire::NoReply{};
}

Outcome<std::uint64_t> SessionVmm::create(CallContext&, const wire::VmmCreateRequest& v) {
  if (session_.isolated()) return CallError{cuda::CUDA_ERROR_NOT_SUPPORTED};  // as reserve()
  if (v.device >= session_.device().devices().count) return CallError{cuda::CUDA_ERROR_INVALID_DEVICE};
  if (v.size == 0) return CallError{CUDA_ERROR_INVALID_VALUE};
  // An exportable handle would name broker memory in the client's process: not offered.
  if (v.handle_types != 0) return CallError{cuda::CUDA_ERROR_NOT_SUPPORTED};
  if (!session_.may_allocate(v.device, v.size)) return CallError{CUDA_ERROR_OUT_OF_MEMORY};
  const cuda::CUmemAllocationProp prop = device_prop(v.device);
  const DeviceContext& context = session_.context(v.device);
  cuda::CUmemGenericAllocationHandle handle = 0;
  if (CUresult r = context.mem_create(&handle, v.size, &prop, v.flags); r != CUDA_SUCCESS) return CallError{r};
  const std::uint64_t id = next_allocation_++;
  allocations_[id] = Allocation{handle, v.size, &context};
  session_.count_device_bytes(v.device, v.size);
  session_.counters().allocations.fetch_add(1, std::memory_order_relaxed);
  return id;
}

Outcome<wire::NoReply> SessionVmm::release(CallContext&, const wire::HandleRequest& request) {
  auto it = allocations_.find(request.handle);
  if (it == allocations_.end() || it->second.released) return CallError{CUDA_ERROR_INVALID_VALUE};
  // Like cuMemRelease: the id is gone at once, the memory once it is unmapped everywhere.
  const CUresult r = it->second.context->mem_release(it->second.handle);
  it->second.released = true;
  forget_allocation(request.handle);
  return answer(r);
}

Outcome<wire::NoReply> SessionVmm::map(CallContext&, const wire::VmmMapRequest& v) {
  auto allocation = allocations_.find(v.allocation);
  if (allocation == allocations_.end() || allocation->second.released) return CallError{CUDA_ERROR_INVALID_HANDLE};
  if (v.size == 0 || v.offset > allocation->second.bytes || v.size > allocation->second.bytes - v.offset ||
      !reservation_holding(v.pointer, v.size)) {
    return CallError{CUDA_ERROR_INVALID_VALUE};
  }
  if (mappings_.size() >= kMaxMappings) return CallError{CUDA_ERROR_OUT_OF_MEMORY};
  auto next = mappings_.lower_bound(v.pointer);
  if ((next != mappings_.end() && next->first - v.pointer < v.size) ||
      (next != mappings_.begin() && std::prev(next)->first + std::prev(next)->second.bytes > v.pointer)) {
    return CallError{CUDA_ERROR_INVALID_VALUE};  // overlaps a mapping
  }
  const DeviceContext& context = session_.current_context();
  if (CUresult r = context.mem_map(v.pointer, v.size, v.offset, allocation->second.handle, v.flags); r != CUDA_SUCCESS) {
    return CallError{r};
  }
  mappings_[v.pointer] = Mapping{v.size, v.allocation, &context, session_.new_memory_serial()};
  ++allocation->second.mappings;
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionVmm::unmap(CallContext&, const wire::VmmRangeRequest& v) {
  std::vector<std::uint64_t> found;
  if (!whole_mappings(v.pointer, v.size, found)) return CallError{CUDA_ERROR_INVALID_VALUE};
  CUresult status = CUDA_SUCCESS;
  for (std::uint64_t address : found) {
    auto it = mappings_.find(address);
    if (CUresult r = it->second.context->mem_unmap(address, it->second.bytes); r != CUDA_SUCCESS) {
      status = r;
      continue;
    }
    const std::uint64_t allocation = it->second.allocation;
    mappings_.erase(it);
    session_.memory_released();
    --allocations_[allocation].mappings;
    forget_allocation(allocation);
  }
  return answer(status);
}

Outcome<wire::NoReply> SessionVmm::set_access(CallContext&, const wire::VmmAccessRequest& v) {
  if (v.count == 0 || v.count > wire::kMaxVmmAccessDescriptors) return CallError{CUDA_ERROR_INVALID_VALUE};
  const wire::DeviceTable& devices = session_.device().devices();
  cuda::CUmemAccessDesc descriptors[wire::kMaxVmmAccessDescriptors]{};
  bool accessible = false;
  for (std::uint32_t i = 0; i < v.count; ++i) {
    const auto& d = v.descriptors[i];
    if (d.location_type != cuda::CU_MEM_LOCATION_TYPE_DEVICE) return CallError{CUDA_ERROR_INVALID_VALUE};
    if (d.device >= devices.count) return CallError{cuda::CUDA_ERROR_INVALID_DEVICE};
    if (d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_NONE && d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_READ &&
        d.flags != cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE) {
      return CallError{CUDA_ERROR_INVALID_VALUE};
    }
    descriptors[i].location.type = cuda::CU_MEM_LOCATION_TYPE_DEVICE;
    descriptors[i].location.id = devices.devices[d.device].ordinal;
    descriptors[i].flags = d.flags;
    accessible = accessible || d.flags == cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  }
  std::vector<std::uint64_t> found;
  if (!whole_mappings(v.pointer, v.size, found)) return CallError{CUDA_ERROR_INVALID_VALUE};
  if (CUresult r = session_.current_context().mem_set_access(v.pointer, v.size, descriptors, v.count);
      r != CUDA_SUCCESS) {
    return CallError{r};
  }
  for (std::uint64_t address : found) mappings_[address].accessible = accessible;
  session_.memory_released();  // access taken away counts as memory let go
  return wire::NoReply{};
}

}  // namespace gpubroker::broker
