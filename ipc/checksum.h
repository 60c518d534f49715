// A fast streaming 64-bit checksum for end-to-end data checks in tests and benchmarks. Order- and
// position-sensitive; the result does not depend on how the stream is cut into pieces.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace gpubroker::ipc {

class Checksum {
 public:
  void update(std::span<const std::byte> bytes);
  [[nodiscard]] std::uint64_t value() const;
  [[nodiscard]] std::uint64_t bytes() const { return total_; }

 private:
  void mix(std::uint64_t word) {
    hash_ = (hash_ ^ word) * 0x9e3779b97f4a7c15ull;
    hash_ ^= hash_ >> 29;
  }

  std::uint64_t hash_ = 0x243f6a8885a308d3ull;
  std::uint64_t total_ = 0;
  std::uint64_t partial_ = 0;  // bytes of an unfinished word, little-endian
  unsigned partial_bytes_ = 0;
};

// Fills `bytes` with a deterministic pattern; position `offset` of the stream seeded by `seed`.
void fill_pattern(std::span<std::byte> bytes, std::uint64_t seed, std::uint64_t offset);

}  // namespace gpubroker::ipc
