#include "fatbin/elf_image.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "fatbin/bytes.h"

namespace gpubroker::fatbin::detail {
namespace {

constexpr std::size_t kElfHeaderSize = 64;
constexpr std::size_t kSectionHeaderSize = 64;
constexpr std::size_t kSymbolSize = 24;
constexpr std::uint8_t kClass64 = 2;
constexpr std::uint8_t kLittleEndian = 1;
constexpr std::uint16_t kSectionIndexExtended = 0xffff;  // SHN_XINDEX
constexpr std::uint16_t kSectionIndexReserved = 0xff00;  // SHN_LORESERVE
// No cubin comes near these; they bound the work a hostile header can ask for.
constexpr std::uint64_t kMaxSections = 1u << 20;

FatbinError malformed(std::string detail) {
  return make_error(FatbinErrc::kMalformedElf, std::move(detail));
}

// The NUL-terminated string at `offset` of a string table section.
Result<std::string_view> string_at(const ElfSection& table, std::uint64_t offset) {
  if (offset >= table.data.size()) {
    return malformed(
        fmt::format("name offset {} outside its {}-byte string table", offset, table.data.size()));
  }
  const char* begin = reinterpret_cast<const char*>(table.data.data()) + offset;
  const std::size_t room = table.data.size() - offset;
  const void* end = std::memchr(begin, 0, room);
  if (end == nullptr) return malformed(fmt::format("name at {} is not terminated", offset));
  return std::string_view(begin, static_cast<const char*>(end) - begin);
}

}  // namespace

bool has_elf_magic(std::span<const std::byte> bytes) {
  static constexpr unsigned char kMagic[4] = {0x7f, 'E', 'L', 'F'};
  return bytes.size() >= 4 && std::memcmp(bytes.data(), kMagic, 4) == 0;
}

const ElfSection* ElfImage::find_section(std::string_view name) const {
  auto found = std::lower_bound(sections_by_name_.begin(), sections_by_name_.end(), name,
                                [](const std::pair<std::string_view, std::size_t>& entry,
                                   std::string_view wanted) { return entry.first < wanted; });
  if (found == sections_by_name_.end() || found->first != name) return nullptr;
  return &sections_[found->second];
}

Result<ElfImage> ElfImage::parse(std::span<const std::byte> bytes) {
  if (!has_elf_magic(bytes)) return malformed("no ELF magic");
  if (bytes.size() < kElfHeaderSize) {
    return malformed(
        fmt::format("{} bytes, an ELF64 header needs {}", bytes.size(), kElfHeaderSize));
  }
  const auto elf_class = load_checked<std::uint8_t>(bytes, 4);
  const auto encoding = load_checked<std::uint8_t>(bytes, 5);
  if (elf_class != kClass64 || encoding != kLittleEndian) {
    return malformed(
        fmt::format("class {} encoding {}: not ELF64 little-endian", elf_class, encoding));
  }
  ElfImage image;
  image.flags_ = load_checked<std::uint32_t>(bytes, 0x30);
  const auto section_offset = load_checked<std::uint64_t>(bytes, 0x28);
  const auto section_entry_size = load_checked<std::uint16_t>(bytes, 0x3a);
  std::uint64_t section_count = load_checked<std::uint16_t>(bytes, 0x3c);
  std::uint32_t names_index = load_checked<std::uint16_t>(bytes, 0x3e);
  if (section_offset == 0) return image;  // no section table: nothing to find
  if (section_entry_size < kSectionHeaderSize) {
    return malformed(
        fmt::format("e_shentsize {} is below {}", section_entry_size, kSectionHeaderSize));
  }
  if (!fits(bytes.size(), section_offset, kSectionHeaderSize)) {
    return malformed(
        fmt::format("section table at {} outside the {}-byte image", section_offset, bytes.size()));
  }
  // With many sections the true count and name-table index live in section 0's header.
  if (section_count == 0) section_count = load_checked<std::uint64_t>(bytes, section_offset + 32);
  if (names_index == kSectionIndexExtended) {
    names_index = load_checked<std::uint32_t>(bytes, section_offset + 40);
  }
  if (section_count > kMaxSections ||
      !fits(bytes.size(), section_offset, section_count * section_entry_size)) {
    return malformed(fmt::format("{} section headers of {} bytes at {} exceed the {}-byte image",
                                 section_count, section_entry_size, section_offset, bytes.size()));
  }

  std::vector<std::uint32_t> name_offsets;
  image.sections_.reserve(section_count);
  name_offsets.reserve(section_count);
  for (std::uint64_t index = 0; index < section_count; ++index) {
    const std::uint64_t header = section_offset + index * section_entry_size;
    ElfSection section;
    name_offsets.push_back(load_checked<std::uint32_t>(bytes, header + 0));
    section.type = load_checked<std::uint32_t>(bytes, header + 4);
    section.flags = load_checked<std::uint64_t>(bytes, header + 8);
    const auto offset = load_checked<std::uint64_t>(bytes, header + 24);
    section.size = load_checked<std::uint64_t>(bytes, header + 32);
    section.link = load_checked<std::uint32_t>(bytes, header + 40);
    section.info = load_checked<std::uint32_t>(bytes, header + 44);
    if (section.type != kSectionNoBits && index != 0) {
      if (!fits(bytes.size(), offset, section.size)) {
        return malformed(fmt::format("section {}: {} bytes at {} exceed the {}-byte image", index,
                                     section.size, offset, bytes.size()));
      }
      section.data = bytes.subspan(offset, section.size);
    }
    image.sections_.push_back(section);
  }

  if (section_count > 0) {
    if (names_index >= section_count) {
      return malformed(fmt::format("e_shstrndx {} of {} sections", names_index, section_count));
    }
    const ElfSection names = image.sections_[names_index];
    for (std::size_t index = 1; index < image.sections_.size(); ++index) {
      Result<std::string_view> name = string_at(names, name_offsets[index]);
      if (!name) {
        return malformed(fmt::format("section {}: {}", index, name.error().detail));
      }
      image.sections_[index].name = name.value();
    }
  }

  image.sections_by_name_.reserve(image.sections_.size());
  for (std::size_t index = 0; index < image.sections_.size(); ++index) {
    image.sections_by_name_.emplace_back(image.sections_[index].name, index);
  }
  std::stable_sort(image.sections_by_name_.begin(), image.sections_by_name_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  // An ELF file has at most one symbol table; reading only the first keeps the work linear.
  for (const ElfSection& table : image.sections_) {
    if (table.type != kSectionSymtab) continue;
    if (table.link >= image.sections_.size()) {
      return malformed(fmt::format("symbol table names string table {} of {}", table.link,
                                   image.sections_.size()));
    }
    const ElfSection& strings = image.sections_[table.link];
    const std::size_t count = table.data.size() / kSymbolSize;
    image.symbols_.reserve(count);
    for (std::size_t index = 0; index < count; ++index) {
      const std::size_t at = index * kSymbolSize;
      ElfSymbol symbol;
      const auto name_offset = load_checked<std::uint32_t>(table.data, at + 0);
      const auto info = load_checked<std::uint8_t>(table.data, at + 4);
      symbol.type = info & 0xf;
      symbol.other = load_checked<std::uint8_t>(table.data, at + 5);
      const auto section_index = load_checked<std::uint16_t>(table.data, at + 6);
      symbol.size = load_checked<std::uint64_t>(table.data, at + 16);
      if (section_index != 0 && section_index < kSectionIndexReserved) {
        if (section_index >= image.sections_.size()) {
          return malformed(fmt::format("symbol {}: section {} of {}", index, section_index,
                                       image.sections_.size()));
        }
        symbol.section = section_index;
      }
      if (name_offset != 0) {
        Result<std::string_view> name = string_at(strings, name_offset);
        if (!name) return malformed(fmt::format("symbol {}: {}", index, name.error().detail));
        symbol.name = name.value();
      }
      image.symbols_.push_back(symbol);
    }
    break;
  }
  return image;
}

}  // namespace gpubroker::fatbin::detail
