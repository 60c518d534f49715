#include "ipc/host_arena.h"

#include <boost/interprocess/managed_external_buffer.hpp>
#include <mutex>
#include <new>

namespace gpubroker::ipc {

// managed_external_buffer has no lock of its own (null_mutex_family): every thread of a client
// allocates pinned memory here, so the heap is serialized by `lock`.
struct HostArena::Heap {
  boost::interprocess::managed_external_buffer buffer;
  std::mutex lock;
};

HostArena::HostArena(Mapping mapping, std::unique_ptr<Heap> heap)
    : mapping_(std::move(mapping)), heap_(std::move(heap)) {}
HostArena::HostArena(HostArena&&) noexcept = default;
HostArena& HostArena::operator=(HostArena&&) noexcept = default;
HostArena::~HostArena() = default;

Result<HostArena> HostArena::create(Mapping mapping) {
  try {
    auto heap = std::make_unique<Heap>();
    heap->buffer = boost::interprocess::managed_external_buffer(boost::interprocess::create_only, mapping.data(),
                                                                mapping.size());
    return HostArena(std::move(mapping), std::move(heap));
  } catch (const std::exception&) {
    return IpcError{IpcErrc::kBadSegment};
  }
}

Result<std::byte*> HostArena::allocate(std::size_t bytes) {
  std::lock_guard guard(heap_->lock);
  void* p = heap_->buffer.allocate_aligned(bytes == 0 ? 1 : bytes, kHostArenaAlignment, std::nothrow);
  if (p == nullptr) return IpcError{IpcErrc::kOutOfMemory};
  return static_cast<std::byte*>(p);
}

bool HostArena::free(void* pointer) {
  if (!heap_->buffer.belongs_to_segment(pointer)) return false;
  std::lock_guard guard(heap_->lock);
  heap_->buffer.deallocate(pointer);
  return true;
}

std::optional<std::uint64_t> HostArena::offset_of(const void* pointer, std::size_t bytes) const {
  const auto* p = static_cast<const std::byte*>(pointer);
  if (p < base() || p > base() + size()) return std::nullopt;
  const std::uint64_t offset = static_cast<std::uint64_t>(p - base());
  if (bytes > size() - offset) return std::nullopt;
  return offset;
}

std::size_t HostArena::free_bytes() const {
  std::lock_guard guard(heap_->lock);
  return heap_->buffer.get_free_memory();
}

}  // namespace gpubroker::ipc
