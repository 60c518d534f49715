#include "synthetic_cubin.h"

#include <map>
#include <utility>

#include "test_inputs.h"

namespace gpubroker::fatbin::testing {
namespace {

constexpr std::uint32_t kProgbits = 1;
constexpr std::uint32_t kSymtab = 2;
constexpr std::uint32_t kStrtab = 3;
constexpr std::uint32_t kNobits = 8;
constexpr std::uint32_t kCudaInfo = 0x70000000;  // SHT_LOPROC, as ptxas types .nv.info

struct Section {
  std::string name{};
  std::uint32_t type = kProgbits;
  std::uint64_t flags = 0;
  Bytes data{};
  std::uint64_t nobits_size = 0;
  std::uint32_t link = 0;
  std::uint32_t info = 0;
  std::uint64_t entry_size = 0;
};

// Appends `text` and its NUL to a string table; returns its offset.
std::uint32_t add_string(Bytes& table, const std::string& text) {
  const auto offset = static_cast<std::uint32_t>(table.size());
  for (char c : text) table.push_back(static_cast<std::byte>(c));
  table.push_back(std::byte{0});
  return offset;
}

void append_symbol(Bytes& symtab, std::uint32_t name, std::uint8_t info, std::uint8_t other,
                   std::uint16_t section, std::uint64_t size) {
  const std::size_t at = symtab.size();
  symtab.resize(at + 24);
  store(symtab, at + 0, name);
  store(symtab, at + 4, info);
  store(symtab, at + 5, other);
  store(symtab, at + 6, section);
  store(symtab, at + 16, size);
}

}  // namespace

Bytes make_cubin(const std::vector<SyntheticKernel>& kernels,
                 const std::vector<SyntheticVariable>& variables) {
  std::vector<Section> sections(4);  // null, .shstrtab, .strtab, .symtab
  sections[1] = Section{.name = ".shstrtab", .type = kStrtab};
  sections[2] = Section{.name = ".strtab", .type = kStrtab};
  sections[3] = Section{.name = ".symtab", .type = kSymtab, .link = 2, .entry_size = 24};
  Bytes strtab(1);   // names start after a NUL; moved into sections[2] once complete
  Bytes symtab(24);  // symbol 0 is null

  for (const SyntheticKernel& kernel : kernels) {
    const auto text_index = static_cast<std::uint16_t>(sections.size());
    sections.push_back(Section{
        .name = ".text." + kernel.name, .type = kProgbits, .flags = 0x6, .data = Bytes(16)});
    if (kernel.has_info_section) {
      sections.push_back(Section{.name = ".nv.info." + kernel.name,
                                 .type = kCudaInfo,
                                 .flags = 0x40,
                                 .data = kernel.info,
                                 .link = 3,
                                 .info = text_index});
    }
    const std::uint32_t name = add_string(strtab, kernel.name);
    append_symbol(symtab, name, /*STB_GLOBAL|STT_FUNC*/ 0x12, kernel.is_entry ? 0x10 : 0,
                  text_index, 16);
  }
  std::map<std::string, std::uint16_t> variable_sections;
  for (const SyntheticVariable& variable : variables) {
    auto [found, created] = variable_sections.emplace(variable.section, sections.size());
    if (created) {
      Section section{.name = variable.section,
                      .type = variable.no_bits ? kNobits : kProgbits,
                      .flags = variable.section_flags};
      if (variable.no_bits) {
        section.nobits_size = variable.size;
      } else {
        section.data.resize(variable.size);
      }
      sections.push_back(section);
    }
    const std::uint32_t name = add_string(strtab, variable.name);
    append_symbol(symtab, name, /*STB_LOCAL|STT_OBJECT*/ 0x01, 0, found->second, variable.size);
  }
  sections[2].data = std::move(strtab);
  sections[3].data = std::move(symtab);

  std::vector<std::uint32_t> name_offsets(sections.size(), 0);
  Bytes& shstrtab = sections[1].data;
  shstrtab.push_back(std::byte{0});
  for (std::size_t i = 1; i < sections.size(); ++i) {
    name_offsets[i] = add_string(shstrtab, sections[i].name);
  }

  Bytes image(64);
  std::vector<std::uint64_t> offsets(sections.size(), 0);
  for (std::size_t i = 1; i < sections.size(); ++i) {
    image.resize((image.size() + 7) / 8 * 8);
    offsets[i] = image.size();
    image.insert(image.end(), sections[i].data.begin(), sections[i].data.end());
  }
  image.resize((image.size() + 7) / 8 * 8);
  const std::uint64_t section_table = image.size();
  image.resize(section_table + 64 * sections.size());
  for (std::size_t i = 1; i < sections.size(); ++i) {
    const std::size_t at = section_table + 64 * i;
    const Section& section = sections[i];
    store(image, at + 0, name_offsets[i]);
    store(image, at + 4, section.type);
    store(image, at + 8, section.flags);
    store(image, at + 24, offsets[i]);
    store(image, at + 32, section.type == kNobits ? section.nobits_size : section.data.size());
    store(image, at + 40, section.link);
    store(image, at + 44, section.info);
    store(image, at + 56, section.entry_size);
  }

  const unsigned char ident[16] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x41, 8};
  for (std::size_t i = 0; i < 16; ++i) image[i] = static_cast<std::byte>(ident[i]);
  store(image, 0x10, std::uint16_t{2});    // ET_EXEC
  store(image, 0x12, std::uint16_t{190});  // EM_CUDA
  store(image, 0x14, std::uint32_t{1});
  store(image, 0x28, section_table);
  store(image, 0x30, std::uint32_t{0x6005a04});  // sm_90, as ptxas 13.0 writes it
  store(image, 0x34, std::uint16_t{64});
  store(image, 0x3a, std::uint16_t{64});
  store(image, 0x3c, static_cast<std::uint16_t>(sections.size()));
  store(image, 0x3e, std::uint16_t{1});
  return image;
}

Bytes param_record(std::uint8_t attribute, std::uint16_t ordinal, std::uint16_t offset,
                   std::uint32_t size_word) {
  Bytes payload(12);
  store(payload, 4, ordinal);
  store(payload, 6, offset);
  store(payload, 8, size_word);
  return sized_record(attribute, payload);
}

Bytes inline_record(std::uint8_t format, std::uint8_t attribute, std::uint16_t value) {
  Bytes record(4);
  store(record, 0, format);
  store(record, 1, attribute);
  store(record, 2, value);
  return record;
}

Bytes sized_record(std::uint8_t attribute, const Bytes& payload) {
  Bytes record = inline_record(4, attribute, static_cast<std::uint16_t>(payload.size()));
  record.insert(record.end(), payload.begin(), payload.end());
  return record;
}

Bytes join(const std::vector<Bytes>& parts) {
  Bytes all;
  for (const Bytes& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

}  // namespace gpubroker::fatbin::testing
