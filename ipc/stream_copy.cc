#include "ipc/stream_copy.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace gpubroker::ipc {

namespace {
constexpr std::size_t kStreamThreshold = 64 * 1024;
}

void stream_copy(void* destination, const void* source, std::size_t bytes) {
#if defined(__x86_64__)
  auto* d = static_cast<std::byte*>(destination);
  const auto* s = static_cast<const std::byte*>(source);
  if (bytes < kStreamThreshold) {
    std::memcpy(d, s, bytes);
    return;
  }
  // Align the destination to 16 bytes for the streaming stores.
  const std::size_t head = (16 - (reinterpret_cast<std::uintptr_t>(d) & 15)) & 15;
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  for (; bytes >= 64; bytes -= 64, d += 64, s += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + 48), e);
  }
  std::memcpy(d, s, bytes);
  // Streaming stores are weakly ordered: fence before anyone is told the data is there.
  _mm_sfence();
#else
  std::memcpy(destination, source, bytes);
#endif
}

}  // namespace gpubroker::ipc
