// A minimal, bounds-checked ELF64 little-endian reader for cubins (internal to fatbin/).
//
// Reads the section headers, section names and the symbol table, and nothing else: what
// kernels_from_cubin needs. ElfImage::parse checks every header, every section's extent, every
// name's terminator and every symbol's section index before returning, so its accessors cannot
// go out of bounds. The image refers to the caller's bytes, which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "fatbin/error.h"

namespace gpubroker::fatbin::detail {

inline constexpr std::uint32_t kSectionNoBits = 8;      // SHT_NOBITS: occupies no file bytes
inline constexpr std::uint32_t kSectionSymtab = 2;      // SHT_SYMTAB
inline constexpr std::uint64_t kSectionWrite = 0x1;     // SHF_WRITE
inline constexpr std::uint8_t kSymbolObject = 1;        // STT_OBJECT
inline constexpr std::uint8_t kSymbolFunction = 2;      // STT_FUNC
inline constexpr std::uint8_t kSymbolCudaEntry = 0x10;  // st_other bit nvcc sets on kernels

struct ElfSection {
  std::string_view name;
  std::uint32_t type = 0;
  std::uint64_t flags = 0;
  std::uint64_t size = 0;           // also for NOBITS sections, which have no data
  std::span<const std::byte> data;  // empty for NOBITS
  std::uint32_t link = 0;
  std::uint32_t info = 0;
};

struct ElfSymbol {
  std::string_view name;
  std::uint8_t type = 0;   // STT_*
  std::uint8_t other = 0;  // st_other
  // Index of the defining section; nullopt for undefined, absolute and other special indices.
  std::optional<std::uint32_t> section;
  std::uint64_t size = 0;
};

class ElfImage {
 public:
  [[nodiscard]] static Result<ElfImage> parse(std::span<const std::byte> bytes);

  [[nodiscard]] std::uint32_t flags() const { return flags_; }  // e_flags
  [[nodiscard]] const std::vector<ElfSection>& sections() const { return sections_; }
  [[nodiscard]] const std::vector<ElfSymbol>& symbols() const { return symbols_; }
  // The first section of that name; a binary search.
  [[nodiscard]] const ElfSection* find_section(std::string_view name) const;

 private:
  std::uint32_t flags_ = 0;
  std::vector<ElfSection> sections_;
  std::vector<ElfSymbol> symbols_;
  std::vector<std::pair<std::string_view, std::size_t>> sections_by_name_;  // sorted, for lookup
};

[[nodiscard]] bool has_elf_magic(std::span<const std::byte> bytes);

}  // namespace gpubroker::fatbin::detail
