// parse_module: which image of a fatbin a device loads, and that image's kernels.
#include <fmt/core.h>

#include <cctype>
#include <optional>

#include "fatbin/bytes.h"
#include "fatbin/elf_image.h"
#include "fatbin/image_kernels.h"

namespace gpubroker::fatbin {
namespace {

using detail::make_error;

std::uint32_t major_of(std::uint32_t arch) { return arch / 10; }

// A cubin runs on later GPUs of its major version; an sm_XXa cubin only on exactly sm_XX.
bool cubin_runs_on(const Entry& entry, std::uint32_t device_arch) {
  if (entry.arch_specific()) return entry.arch == device_arch;
  return major_of(entry.arch) == major_of(device_arch) && entry.arch <= device_arch;
}

// PTX JIT-compiles for any later GPU; compute_XXa only for sm_XX, compute_XXf within its major.
bool ptx_compiles_for(const Entry& entry, std::uint32_t device_arch) {
  if (entry.arch_specific()) return entry.arch == device_arch;
  if (entry.family_specific()) {
    return major_of(entry.arch) == major_of(device_arch) && entry.arch <= device_arch;
  }
  return entry.arch <= device_arch;
}

// Whether `candidate` is a better choice than `best`: higher arch, then arch-specific.
bool better(const Entry& candidate, const Entry* best) {
  if (best == nullptr) return true;
  if (candidate.arch != best->arch) return candidate.arch > best->arch;
  return candidate.arch_specific() && !best->arch_specific();
}

const Entry* choose(const std::vector<Entry>& entries, std::uint32_t device_arch) {
  const Entry* best_cubin = nullptr;
  const Entry* best_ptx = nullptr;
  for (const Entry& entry : entries) {
    if (!entry.is_64bit()) continue;
    if (entry.kind == EntryKind::kCubin && cubin_runs_on(entry, device_arch) &&
        better(entry, best_cubin)) {
      best_cubin = &entry;
    }
    if (entry.kind == EntryKind::kPtx && ptx_compiles_for(entry, device_arch) &&
        better(entry, best_ptx)) {
      best_ptx = &entry;
    }
  }
  return best_cubin != nullptr ? best_cubin : best_ptx;
}

// PTX as cuModuleLoadData recognizes it: a comment or `.version` first, after white space.
bool looks_like_ptx(std::span<const std::byte> bytes) {
  std::size_t at = 0;
  while (at < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[at])) != 0) ++at;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + at, bytes.size() - at);
  return text.starts_with("//") || text.starts_with("/*") || text.starts_with(".version");
}

// The text of a PTX payload, without the NULs that pad it.
std::string_view ptx_text(std::span<const std::byte> bytes) {
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::size_t end = text.find_last_not_of('\0');
  return end == std::string_view::npos ? std::string_view() : text.substr(0, end + 1);
}

Result<ModuleInfo> module_from(Result<detail::ImageKernels> image, EntryKind kind,
                               std::optional<std::uint32_t> arch) {
  if (!image) return image.error();
  detail::ImageKernels& found = image.value();
  ModuleInfo module;
  module.kernels = std::move(found.kernels);
  module.has_writable_globals = found.has_writable_globals;
  module.chosen_kind = kind;
  module.chosen_arch = arch.value_or(found.arch);
  return module;
}

}  // namespace

Result<ModuleInfo> parse_module(std::span<const std::byte> image, std::uint32_t device_arch) {
  return detail::without_exceptions([&]() -> Result<ModuleInfo> {
    if (detail::has_elf_magic(image)) {
      return module_from(detail::read_cubin(image), EntryKind::kCubin, std::nullopt);
    }
    if (looks_like_ptx(image)) {
      return module_from(detail::read_ptx(ptx_text(image)), EntryKind::kPtx, std::nullopt);
    }

    Result<std::vector<Entry>> entries = list_entries(image);
    if (!entries) return entries.error();
    const Entry* chosen = choose(entries.value(), device_arch);
    if (chosen == nullptr) {
      return make_error(
          FatbinErrc::kNoCompatibleImage,
          fmt::format("none of {} entries runs on sm_{}", entries.value().size(), device_arch));
    }
    Result<std::vector<std::byte>> bytes = payload(*chosen);
    if (!bytes) return bytes.error();
    Result<ModuleInfo> module =
        chosen->kind == EntryKind::kCubin
            ? module_from(detail::read_cubin(bytes.value()), EntryKind::kCubin, chosen->arch)
            : module_from(detail::read_ptx(ptx_text(bytes.value())), EntryKind::kPtx, chosen->arch);
    if (!module) {
      // Say which image of the fatbin was at fault.
      return make_error(module.error().code,
                        fmt::format("{} for sm_{} at offset {}: {}",
                                    chosen->kind == EntryKind::kCubin ? "cubin" : "PTX",
                                    chosen->arch, chosen->offset, module.error().detail));
    }
    return module;
  });
}

}  // namespace gpubroker::fatbin
