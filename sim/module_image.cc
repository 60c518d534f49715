#include "sim/module_image.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "fatbin/elf_image.h"
#include "fatbin/fatbin.h"

namespace gpubroker::sim {
namespace {

// No image is believed to be larger than this; larger header fields are corruption.
constexpr std::uint64_t kMaxImageBytes = std::uint64_t{1} << 31;

template <class T>
T load(const unsigned char* bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes + offset, sizeof(T));
  return value;
}

ImageError invalid(std::string detail) { return {cuda::CUDA_ERROR_INVALID_IMAGE, std::move(detail)}; }

// The extent of a container: header_size + fat_size from its 16-byte header.
ImageResult<std::size_t> fatbin_size(const unsigned char* bytes) {
  const auto header_size = load<std::uint16_t>(bytes, 6);
  const auto fat_size = load<std::uint64_t>(bytes, 8);
  if (header_size < fatbin::kContainerHeaderSize || fat_size > kMaxImageBytes)
    return invalid(fmt::format("fatbin container header_size {} fat_size {}", header_size, fat_size));
  return static_cast<std::size_t>(header_size + fat_size);
}

// The extent of an ELF64 image: the furthest of its header tables and non-NOBITS sections.
ImageResult<std::size_t> elf_size(const unsigned char* bytes) {
  if (bytes[4] != 2 || bytes[5] != 1) return invalid("ELF image is not 64-bit little-endian");
  const auto program_offset = load<std::uint64_t>(bytes, 0x20);
  const auto section_offset = load<std::uint64_t>(bytes, 0x28);
  const auto program_entry = load<std::uint16_t>(bytes, 0x36);
  const auto program_count = load<std::uint16_t>(bytes, 0x38);
  const auto section_entry = load<std::uint16_t>(bytes, 0x3A);
  const auto section_count = load<std::uint16_t>(bytes, 0x3C);
  if (program_offset > kMaxImageBytes || section_offset > kMaxImageBytes ||
      (section_count != 0 && section_entry < 64))
    return invalid("ELF header tables out of range");
  std::uint64_t end = 64;
  end = std::max<std::uint64_t>(end, program_offset + std::uint64_t{program_entry} * program_count);
  end = std::max<std::uint64_t>(end, section_offset + std::uint64_t{section_entry} * section_count);
  for (std::uint16_t i = 0; i < section_count; ++i) {
    const unsigned char* header = bytes + section_offset + std::uint64_t{i} * section_entry;
    const auto type = load<std::uint32_t>(header, 4);
    const auto offset = load<std::uint64_t>(header, 0x18);
    const auto size = load<std::uint64_t>(header, 0x20);
    if (type == fatbin::detail::kSectionNoBits || type == 0) continue;
    if (offset > kMaxImageBytes || size > kMaxImageBytes) return invalid("ELF section out of range");
    end = std::max(end, offset + size);
  }
  if (end > kMaxImageBytes) return invalid("ELF image too large");
  return static_cast<std::size_t>(end);
}

ImageError from_parser(const fatbin::FatbinError& error) {
  cuda::CUresult code = cuda::CUDA_ERROR_INVALID_IMAGE;
  if (error.code == fatbin::FatbinErrc::kNoCompatibleImage) code = cuda::CUDA_ERROR_NO_BINARY_FOR_GPU;
  if (error.code == fatbin::FatbinErrc::kMalformedPtx) code = cuda::CUDA_ERROR_INVALID_PTX;
  if (error.code == fatbin::FatbinErrc::kOutOfMemory) code = cuda::CUDA_ERROR_OUT_OF_MEMORY;
  return {code, fatbin::describe(error)};
}

bool is_global_section(std::string_view name) {
  return name.starts_with(".nv.global") || name.starts_with(".nv.constant");
}

// The device variables of a cubin: defined object symbols in .nv.global* and .nv.constant*.
void read_globals(std::span<const std::byte> cubin, std::vector<GlobalVariable>& globals) {
  auto elf = fatbin::detail::ElfImage::parse(cubin);
  if (!elf) return;
  const auto& sections = elf.value().sections();
  const auto& symbols = elf.value().symbols();
  for (const auto& symbol : symbols) {
    if (symbol.type != fatbin::detail::kSymbolObject || !symbol.section || symbol.size == 0) continue;
    if (symbol.name.empty() || symbol.name.starts_with('.')) continue;
    if (*symbol.section >= sections.size()) continue;
    const auto& section = sections[*symbol.section];
    if (!is_global_section(section.name)) continue;
    GlobalVariable variable{std::string(symbol.name), symbol.size, {}};
    // Alone in its section: it starts at offset 0, so the section's data is its initial value.
    if (section.size == symbol.size && section.data.size() == symbol.size) {
      const auto* data = reinterpret_cast<const unsigned char*>(section.data.data());
      variable.initial.assign(data, data + section.data.size());
    }
    globals.push_back(std::move(variable));
  }
}

// The cubin parse_module chose, decompressed, when the image is a fatbin; the image itself when
// it is a bare cubin; nothing for PTX.
std::vector<std::byte> chosen_cubin(std::span<const std::byte> image, const fatbin::ModuleInfo& info) {
  if (info.chosen_kind != fatbin::EntryKind::kCubin) return {};
  if (fatbin::detail::has_elf_magic(image)) return {image.begin(), image.end()};
  auto entries = fatbin::list_entries(image);
  if (!entries) return {};
  const fatbin::Entry* best = nullptr;
  for (const fatbin::Entry& entry : entries.value()) {
    if (entry.kind != fatbin::EntryKind::kCubin || entry.arch != info.chosen_arch || !entry.is_64bit()) continue;
    if (best == nullptr || (entry.arch_specific() && !best->arch_specific())) best = &entry;
  }
  if (best == nullptr) return {};
  auto payload = fatbin::payload(*best);
  if (!payload) return {};
  return std::move(payload).value();
}

}  // namespace

ImageResult<ModuleImage> read_module_image(const void* image, std::uint32_t device_arch) {
  if (image == nullptr) return ImageError{cuda::CUDA_ERROR_INVALID_VALUE, "null image"};
  const auto* bytes = static_cast<const unsigned char*>(image);
  std::size_t size = 0;
  if (load<std::uint32_t>(bytes, 0) == fatbin::kContainerMagic) {
    auto extent = fatbin_size(bytes);
    if (!extent) return extent.error();
    size = extent.value();
  } else if (bytes[0] == 0x7F && bytes[1] == 'E' && bytes[2] == 'L' && bytes[3] == 'F') {
    auto extent = elf_size(bytes);
    if (!extent) return extent.error();
    size = extent.value();
  } else {
    size = std::strlen(reinterpret_cast<const char*>(bytes));
  }
  std::span<const std::byte> span(reinterpret_cast<const std::byte*>(bytes), size);
  auto info = fatbin::parse_module(span, device_arch);
  if (!info) return from_parser(info.error());

  ModuleImage module;
  for (const fatbin::KernelInfo& kernel : info.value().kernels) {
    auto record = std::make_shared<KernelRecord>();
    record->name = kernel.name;
    for (const fatbin::ParamInfo& param : kernel.params) record->layout.push_back({param.offset, param.size});
    record->param_bytes = kernel.param_bytes;
    module.kernels.push_back(std::move(record));
  }
  if (info.value().has_writable_globals) {
    std::vector<std::byte> cubin = chosen_cubin(span, info.value());
    if (!cubin.empty()) read_globals(cubin, module.globals);
  }
  return module;
}

}  // namespace gpubroker::sim
