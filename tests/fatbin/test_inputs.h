// Inputs of the fatbin tests: the sample fatbins committed under tests/data/fatbin (always there),
// the ones nvcc builds from the same sources at build time (only where nvcc is installed), and the
// layouts their kernels are known to have.
#pragma once

#include <catch2/catch.hpp>
#include <cstddef>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fatbin/fatbin.h"

namespace gpubroker::fatbin {

// How Catch2 prints these in failed assertions (found by argument-dependent lookup).
std::ostream& operator<<(std::ostream& out, FatbinErrc code);
std::ostream& operator<<(std::ostream& out, const KernelInfo& kernel);

}  // namespace gpubroker::fatbin

namespace gpubroker::fatbin::testing {

using Bytes = std::vector<std::byte>;

// A file of tests/data/fatbin; fails the test when it is missing.
[[nodiscard]] Bytes committed(std::string_view name);

// Whether nvcc was found at configure time, and so whether generated() has files.
[[nodiscard]] bool have_nvcc();

// A file nvcc generated at build time (see tests/fatbin/meson.build); nullopt without nvcc.
[[nodiscard]] std::optional<Bytes> generated(std::string_view name);

// The names of the committed files that are fatbins, cubins or PTX (the fuzzer's seeds too).
[[nodiscard]] std::vector<std::string> committed_image_names();

// What kernels.cu's kernels look like, sorted by mangled name as the parser returns them.
[[nodiscard]] const std::vector<KernelInfo>& expected_kernels_cu();

// The code of a result that must be an error; the test stops here if it holds a value.
template <class T>
[[nodiscard]] FatbinErrc error_code(const Result<T>& result) {
  REQUIRE_FALSE(result);
  return result.error().code;
}

[[nodiscard]] std::string_view as_text(std::span<const std::byte> bytes);
[[nodiscard]] std::span<const std::byte> as_bytes(std::string_view text);

// Little-endian field writes for hand-edited copies of real fatbins.
template <class T>
void store(Bytes& bytes, std::size_t offset, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    bytes.at(offset + i) =
        static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
  }
}

}  // namespace gpubroker::fatbin::testing
