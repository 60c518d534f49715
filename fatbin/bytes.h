// Bounds-checked little-endian reads for the fatbin parser (internal to fatbin/).
//
// Every multi-byte field the parser reads goes through load(): it answers "is there a T at
// `offset`?" with the overflow-safe comparison, so a size field that lies cannot move a read out
// of the span. Fatbins and cubins are little-endian, as are the hosts this project runs on.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "fatbin/error.h"

namespace gpubroker::fatbin::detail {

static_assert(std::endian::native == std::endian::little, "the parser reads little-endian fields");

// Whether [offset, offset + length) lies inside a span of `size` bytes, without overflow.
[[nodiscard]] constexpr bool fits(std::uint64_t size, std::uint64_t offset, std::uint64_t length) {
  return offset <= size && length <= size - offset;
}

template <class T>
[[nodiscard]] std::optional<T> load(std::span<const std::byte> bytes, std::uint64_t offset) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (!fits(bytes.size(), offset, sizeof(T))) return std::nullopt;
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// Loads a field the caller has already bounds-checked as part of a larger structure.
template <class T>
[[nodiscard]] T load_checked(std::span<const std::byte> bytes, std::uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

[[nodiscard]] inline FatbinError make_error(FatbinErrc code, std::string detail) {
  return FatbinError{code, std::move(detail)};
}

// Runs the body of a public function so that an allocation failure becomes kOutOfMemory instead of
// an exception leaving the parser (the callers are C ABI entry points of the shim and the broker).
template <class Body>
[[nodiscard]] auto without_exceptions(Body&& body) noexcept -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return FatbinError{FatbinErrc::kOutOfMemory, {}};
  } catch (const std::length_error&) {
    return FatbinError{FatbinErrc::kOutOfMemory, {}};
  }
}

}  // namespace gpubroker::fatbin::detail
