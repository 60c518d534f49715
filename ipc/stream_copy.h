// Copying bulk data to memory that will not be read again soon (a device buffer, a caller's
// destination of a large transfer). Non-temporal stores skip the read-for-ownership of each
// destination line and keep the staging pipe, not the destination, in cache: the same trick
// glibc's memcpy uses for copies larger than the cache.
#pragma once

#include <cstddef>

namespace gpubroker::ipc {

// Copies `bytes` from `source` to `destination`; the ranges must not overlap. Falls back to
// memcpy for small copies, where cache residency wins.
void stream_copy(void* destination, const void* source, std::size_t bytes);

}  // namespace gpubroker::ipc
