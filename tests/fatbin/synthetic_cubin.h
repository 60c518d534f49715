// Hand-made cubins for the cases nvcc does not produce on demand: malformed `.nv.info` records,
// device functions beside kernels, variables in chosen sections. make_cubin writes a minimal but
// well-formed ELF64: section headers, .shstrtab, .strtab, .symtab, and per kernel a `.text.<name>`
// and (unless left out) a `.nv.info.<name>` holding exactly the given records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gpubroker::fatbin::testing {

struct SyntheticKernel {
  std::string name;
  std::vector<std::byte> info;  // the records of `.nv.info.<name>`
  bool is_entry = true;         // false: a device function (no STO_CUDA_ENTRY bit)
  bool has_info_section = true;
};

struct SyntheticVariable {
  std::string name;
  std::string section;  // created if no earlier variable named it
  std::uint64_t size = 4;
  std::uint64_t section_flags = 0x3;  // SHF_WRITE | SHF_ALLOC
  bool no_bits = true;                // SHT_NOBITS, as .nv.global and .nv.shared are
};

[[nodiscard]] std::vector<std::byte> make_cubin(
    const std::vector<SyntheticKernel>& kernels,
    const std::vector<SyntheticVariable>& variables = {});

// A sized (format 4) parameter record: KPARAM_INFO (0x17) or the large-block 0x45.
[[nodiscard]] std::vector<std::byte> param_record(std::uint8_t attribute, std::uint16_t ordinal,
                                                  std::uint16_t offset, std::uint32_t size_word);

// A KPARAM_INFO size word for `size` bytes, with the low bits nvcc sets (0x1f000).
[[nodiscard]] constexpr std::uint32_t kparam_word(std::uint32_t size) {
  return (size << 18) | 0x1f000;
}

// An inline (format 1-3) record such as CBANK_PARAM_SIZE (format 3, attribute 0x19).
[[nodiscard]] std::vector<std::byte> inline_record(std::uint8_t format, std::uint8_t attribute,
                                                   std::uint16_t value);

// A format-4 record with an arbitrary payload.
[[nodiscard]] std::vector<std::byte> sized_record(std::uint8_t attribute,
                                                  const std::vector<std::byte>& payload);

[[nodiscard]] std::vector<std::byte> join(const std::vector<std::vector<std::byte>>& parts);

}  // namespace gpubroker::fatbin::testing
