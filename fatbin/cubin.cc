// Kernel parameter layouts from a cubin's `.nv.info.<kernel>` sections (cuda-runtime-abi.md
// section 5).
//
// A `.nv.info.<kernel>` section is a run of records `u8 format, u8 attribute, u16 value`. Format 4
// (EIFMT_SVAL) means `value` is the length of a payload that follows; formats 1-3 carry the value
// inline and the record is 4 bytes. ptxas writes one parameter record per parameter, in reverse
// ordinal order: KPARAM_INFO (0x17) for blocks up to 4352 bytes, 0x45 above that.
#include <fmt/core.h>

#include <algorithm>
#include <string>
#include <utility>

#include "fatbin/bytes.h"
#include "fatbin/elf_image.h"
#include "fatbin/image_kernels.h"

namespace gpubroker::fatbin {
namespace detail {
namespace {

constexpr std::uint8_t kFormatSized = 4;                 // EIFMT_SVAL
constexpr std::uint8_t kAttributeParamInfo = 0x17;       // KPARAM_INFO
constexpr std::uint8_t kAttributeParamBankSize = 0x19;   // CBANK_PARAM_SIZE
constexpr std::uint8_t kAttributeLargeParamInfo = 0x45;  // KPARAM_INFO for blocks > 4352 bytes
constexpr std::size_t kParamRecordSize = 12;

struct OrdinalParam {
  std::uint16_t ordinal;
  ParamInfo param;
};

FatbinError bad_param_info(std::string_view kernel, std::string detail) {
  return make_error(FatbinErrc::kBadParamInfo, fmt::format("kernel {}: {}", kernel, detail));
}

// One parameter record's payload: u32 index, u16 ordinal, u16 offset, u32 size word.
OrdinalParam read_param_record(std::span<const std::byte> payload, std::uint8_t attribute) {
  const auto ordinal = load_checked<std::uint16_t>(payload, 4);
  const auto offset = load_checked<std::uint16_t>(payload, 6);
  const auto word = load_checked<std::uint32_t>(payload, 8);
  // KPARAM_INFO packs the size into bits 18-31. The large-block record keeps it in the low bits;
  // from sm_100 on, its top byte carries flags (0x05 on pointer parameters, the bits 8-11 of
  // KPARAM_INFO hold on those archs). A parameter is never near 2^24 bytes: offsets are 16-bit.
  const std::uint32_t size =
      attribute == kAttributeParamInfo ? (word >> 18) & 0x3fff : word & 0x00ffffff;
  return OrdinalParam{ordinal, ParamInfo{offset, size}};
}

// `budget` is what is left of the bytes the image's records may span in all: the image's size.
// Real `.nv.info` sections do not overlap; sections that do (or kernels named twice) would make
// the work grow with the square of the input, so running out of budget is an error.
Result<KernelInfo> read_kernel(const ElfImage& image, std::string_view name, std::size_t& budget) {
  const ElfSection* info = image.find_section(fmt::format(".nv.info.{}", name));
  if (info == nullptr) return bad_param_info(name, "no .nv.info section");
  if (info->data.size() != info->size) return bad_param_info(name, ".nv.info section has no data");
  if (info->data.size() > budget) {
    return make_error(FatbinErrc::kMalformedElf,
                      fmt::format("kernel {}: .nv.info sections overlap or repeat", name));
  }
  budget -= info->data.size();

  std::vector<OrdinalParam> params;
  std::optional<std::uint32_t> bank_size;
  const std::span<const std::byte> records = info->data;
  std::size_t at = 0;
  while (at < records.size()) {
    if (records.size() - at < 4) {
      return bad_param_info(name, fmt::format("record at {} cut off", at));
    }
    const auto format = load_checked<std::uint8_t>(records, at);
    const auto attribute = load_checked<std::uint8_t>(records, at + 1);
    const auto value = load_checked<std::uint16_t>(records, at + 2);
    std::span<const std::byte> payload;
    if (format == kFormatSized) {
      if (value > records.size() - at - 4) {
        return bad_param_info(name, fmt::format("record at {}: {}-byte payload runs past the "
                                                "section",
                                                at, value));
      }
      payload = records.subspan(at + 4, value);
      at += 4 + std::size_t{value};
    } else if (format >= 1 && format <= 3) {
      at += 4;
    } else {
      return bad_param_info(name, fmt::format("record at {}: unknown format {}", at, format));
    }

    if (attribute == kAttributeParamInfo || attribute == kAttributeLargeParamInfo) {
      if (format != kFormatSized || payload.size() < kParamRecordSize) {
        return bad_param_info(name, fmt::format("parameter record of {} bytes", payload.size()));
      }
      params.push_back(read_param_record(payload, attribute));
    } else if (attribute == kAttributeParamBankSize) {
      if (format == kFormatSized) {
        auto size = load<std::uint32_t>(payload, 0);
        if (!size) return bad_param_info(name, "CBANK_PARAM_SIZE without a value");
        bank_size = *size;
      } else {
        bank_size = value;
      }
    }
  }

  std::sort(params.begin(), params.end(),
            [](const OrdinalParam& a, const OrdinalParam& b) { return a.ordinal < b.ordinal; });
  KernelInfo kernel;
  kernel.name = std::string(name);
  std::uint64_t end = 0;
  for (std::size_t index = 0; index < params.size(); ++index) {
    if (params[index].ordinal != index) {
      return bad_param_info(
          name, fmt::format("parameter ordinals skip or repeat at {}", params[index].ordinal));
    }
    const ParamInfo& param = params[index].param;
    end = std::max(end, std::uint64_t{param.offset} + param.size);
    kernel.params.push_back(param);
  }
  if (bank_size) {
    if (end > *bank_size) {
      return bad_param_info(
          name, fmt::format("parameters end at {}, CBANK_PARAM_SIZE is {}", end, *bank_size));
    }
    kernel.param_bytes = *bank_size;
  } else {
    kernel.param_bytes = static_cast<std::uint32_t>(end);
  }
  return kernel;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool is_global_section_name(std::string_view name) {
  return name == ".nv.global" || starts_with(name, ".nv.global.");
}

// Variables the host can change after loading: __device__/__managed__ (.nv.global*, or any data
// in a writable section other than per-block shared and per-thread local memory) and __constant__
// (named data in a constant bank other than bank 0, which holds the kernel parameters).
bool has_writable_globals(const ElfImage& image) {
  for (const ElfSection& section : image.sections()) {
    if (is_global_section_name(section.name) && section.size > 0) return true;
  }
  for (const ElfSymbol& symbol : image.symbols()) {
    if (symbol.type != kSymbolObject || !symbol.section || symbol.size == 0) continue;
    const ElfSection& section = image.sections()[*symbol.section];
    if (starts_with(section.name, ".nv.shared") || starts_with(section.name, ".nv.local")) {
      continue;
    }
    if ((section.flags & kSectionWrite) != 0) return true;
    if (starts_with(section.name, ".nv.constant") && !starts_with(section.name, ".nv.constant0")) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<ImageKernels> read_cubin(std::span<const std::byte> elf) {
  Result<ElfImage> image = ElfImage::parse(elf);
  if (!image) return image.error();
  ImageKernels result;
  std::size_t budget = elf.size();
  for (const ElfSymbol& symbol : image.value().symbols()) {
    const bool is_kernel = symbol.type == kSymbolFunction && symbol.section &&
                           (symbol.other & kSymbolCudaEntry) != 0 && !symbol.name.empty();
    if (!is_kernel) continue;
    Result<KernelInfo> kernel = read_kernel(image.value(), symbol.name, budget);
    if (!kernel) return kernel.error();
    result.kernels.push_back(std::move(kernel).value());
  }
  std::sort(result.kernels.begin(), result.kernels.end(),
            [](const KernelInfo& a, const KernelInfo& b) { return a.name < b.name; });
  result.has_writable_globals = has_writable_globals(image.value());
  // The SM number sits in bits 8-15 of a cubin's e_flags (0x5a00 for sm_90, 0x7800 for sm_120).
  result.arch = (image.value().flags() >> 8) & 0xff;
  return result;
}

}  // namespace detail

Result<std::vector<KernelInfo>> kernels_from_cubin(std::span<const std::byte> elf) {
  return detail::without_exceptions([&]() -> Result<std::vector<KernelInfo>> {
    Result<detail::ImageKernels> image = detail::read_cubin(elf);
    if (!image) return image.error();
    return std::move(image).value().kernels;
  });
}

}  // namespace gpubroker::fatbin
