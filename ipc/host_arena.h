// The host arena: the client's pinned-memory heap. It is one large sparse memfd shared with the
// broker; the client sub-allocates it (cudaMallocHost, cudaHostAlloc, cuMemHostAlloc) and names
// ranges of it to the broker by offset, so that data in it never needs a CPU copy.
//
// Client side only. The allocator's bookkeeping lives at the start of the arena (a
// Boost.Interprocess segment manager); the broker never reads it. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "ipc/result.h"
#include "ipc/system.h"

namespace gpubroker::ipc {

// What cudaMallocHost guarantees; the real runtime gives at least this.
inline constexpr std::size_t kHostArenaAlignment = 256;

class HostArena {
 public:
  // Takes over the mapping and lays the allocator into it.
  static Result<HostArena> create(Mapping mapping);

  HostArena(HostArena&&) noexcept;
  HostArena& operator=(HostArena&&) noexcept;
  ~HostArena();

  // Memory aligned to kHostArenaAlignment; kOutOfMemory when the arena is full.
  [[nodiscard]] Result<std::byte*> allocate(std::size_t bytes);
  // Frees what allocate() returned; false for a pointer it did not return.
  bool free(void* pointer);

  // The offset of [pointer, pointer + bytes) inside the arena, if the whole range lies in it.
  [[nodiscard]] std::optional<std::uint64_t> offset_of(const void* pointer, std::size_t bytes) const;

  [[nodiscard]] std::byte* base() const { return mapping_.data(); }
  [[nodiscard]] std::size_t size() const { return mapping_.size(); }
  [[nodiscard]] std::size_t free_bytes() const;

 private:
  struct Heap;
  HostArena(Mapping mapping, std::unique_ptr<Heap> heap);

  Mapping mapping_;
  std::unique_ptr<Heap> heap_;
};

}  // namespace gpubroker::ipc
