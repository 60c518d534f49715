#include "ipc/checksum.h"

namespace gpubroker::ipc {

void Checksum::update(std::span<const std::byte> bytes) {
  total_ += bytes.size();
  std::size_t i = 0;
  while (partial_bytes_ != 0 && i < bytes.size()) {
    partial_ |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[i++])) << (8 * partial_bytes_);
    if (++partial_bytes_ == 8) {
      mix(partial_);
      partial_ = 0;
      partial_bytes_ = 0;
    }
  }
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    mix(word);
  }
  for (; i < bytes.size(); ++i) {
    partial_ |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[i])) << (8 * partial_bytes_++);
  }
}

std::uint64_t Checksum::value() const {
  Checksum copy = *this;
  copy.mix(copy.partial_ ^ (std::uint64_t(copy.partial_bytes_) << 56));
  copy.mix(total_);
  return copy.hash_;
}

void fill_pattern(std::span<std::byte> bytes, std::uint64_t seed, std::uint64_t offset) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::uint64_t x = (offset + i) * 0x9e3779b97f4a7c15ull + seed;
    x ^= x >> 31;
    bytes[i] = static_cast<std::byte>(x >> 24);
  }
}

}  // namespace gpubroker::ipc
