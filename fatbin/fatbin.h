// The fatbin parser: what a CUDA device image contains and how each kernel's parameters are laid
// out, learned from the bytes alone, without a GPU and without the CUDA driver.
//
// A fatbin (what nvcc embeds in a program and passes to __cudaRegisterFatBinary) is one or more
// containers, each holding entries: cubins (ELF, machine code for one architecture) and PTX text
// (JIT-compiled by the driver), possibly compressed. Launch arguments carry no sizes, so the shim
// and the broker need each kernel's parameter layout; it is in the cubin's `.nv.info.<kernel>`
// records, or, for a PTX-only image, in the `.entry` declarations. Formats and measurements:
// shared/reference/cuda-runtime-abi.md, sections 4 and 5.
//
// Example: the layout of every kernel in the image an sm_90 device would load.
//
//   Result<ModuleInfo> module = parse_module(fatbin_bytes, 90);
//   if (!module) { log("bad fatbin: {}", describe(module.error())); return; }
//   for (const KernelInfo& kernel : module.value().kernels)
//     for (const ParamInfo& param : kernel.params) ... param.offset, param.size ...
//
// Every function is pure: it reads only the bytes it is given, never past their end, keeps no
// state, never throws, and may be called from any thread. A malformed image (truncated, lying
// size fields, corrupt compressed data) is an error value. Spans in the results (Entry::stored)
// point into the caller's input and live as long as it does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fatbin/error.h"

namespace gpubroker::fatbin {

inline constexpr std::uint32_t kContainerMagic = 0xBA55ED50;
inline constexpr std::size_t kContainerHeaderSize = 16;

// No entry is decompressed into more than this; a larger declared size is kTooLarge, so a few
// hostile bytes cannot make the broker allocate without bound.
inline constexpr std::uint64_t kMaxUncompressedSize = std::uint64_t{1} << 30;

// The total length of the fatbin containers that follow one another from the start of `bytes`:
// the first container, plus every container that starts exactly where the previous one ends.
// Reads only the 16-byte container headers (and the 4 bytes after the last container, to see that
// no further one starts there), never anything past `bytes`. Errors: kNotAnImage when `bytes`
// does not start with a container, kTruncated when a container runs past `bytes`,
// kUnsupportedVersion.
//
// Note: in a linked program the containers of different translation units lie back to back in
// `.nv_fatbin`, so from the first unit's wrapper this counts the later units' containers too.
// single_container_size() counts the first container only.
[[nodiscard]] Result<std::size_t> container_size(std::span<const std::byte> bytes);

// The same for the shim, which holds only the data pointer of a registered fatbin: `max_bytes`
// bounds what may be read from `data` (for instance the end of its mapping) and must be readable.
[[nodiscard]] Result<std::size_t> container_size(const void* data, std::size_t max_bytes);

// The length of the one container that starts `bytes` (header plus fat_size).
[[nodiscard]] Result<std::size_t> single_container_size(std::span<const std::byte> bytes);

enum class EntryKind : std::uint16_t {
  kPtx = 1,
  kCubin = 2,
  kLtoIr = 8,  // NVVM IR for link-time optimization (-dlto); listed, never chosen
  // Other values are kept as they appear in the header.
};

enum class Compression : std::uint8_t {
  kNone,
  kLz4,     // a raw LZ4 block without frame header
  kZstd,    // a standard zstd frame
  kLegacy,  // an older scheme (flag 0x1000); listed, not decoded (kUnsupportedCompression)
};

// Bits of an entry's flags word (measured with nvcc 13.0 and a CUDA 12.9 build). Also seen, with
// no known meaning the parser needs: 0x1000000 on sm_100 and later cubins (whose headers are 96
// or 112 bytes) and 0x10000 on LTO IR entries, whose payload is not a plain zstd frame.
namespace entry_flag {
inline constexpr std::uint64_t k64Bit = 0x1;
inline constexpr std::uint64_t kDebug = 0x2;
inline constexpr std::uint64_t kLinuxHost = 0x10;
inline constexpr std::uint64_t kCompressedLegacy = 0x1000;
inline constexpr std::uint64_t kCompressedLz4 = 0x2000;
inline constexpr std::uint64_t kCompressedZstd = 0x8000;
inline constexpr std::uint64_t kArchSpecific = 0x100000;    // sm_XXa / compute_XXa
inline constexpr std::uint64_t kFamilySpecific = 0x200000;  // sm_XXf / compute_XXf
}  // namespace entry_flag

// One image of a fatbin, as its entry header describes it.
struct Entry {
  EntryKind kind = EntryKind::kCubin;
  std::uint32_t arch = 0;           // 90 for sm_90 and compute_90, 100 for sm_100, ...
  // PTX: the ISA version (9.0 from nvcc 13.0). Cubins: 1.8 from nvcc 13.0, 1.7 from CUDA 12.9.
  std::uint16_t version_major = 0;
  std::uint16_t version_minor = 0;
  std::uint64_t flags = 0;  // entry_flag bits, kept whole
  Compression compression = Compression::kNone;
  // The bytes payload() reads: the compressed bytes when compressed, else the whole payload
  // (raw PTX carries trailing NULs up to the 8-byte padding).
  std::span<const std::byte> stored;
  std::uint64_t compressed_size = 0;    // 0 when stored raw
  std::uint64_t uncompressed_size = 0;  // what payload() returns; the payload size when raw
  std::size_t offset = 0;               // where the entry header starts in the input
  std::uint32_t header_size = 0;        // 64, 80, 96, 112, 120 or 136 seen

  [[nodiscard]] bool is_64bit() const { return (flags & entry_flag::k64Bit) != 0; }
  [[nodiscard]] bool arch_specific() const { return (flags & entry_flag::kArchSpecific) != 0; }
  [[nodiscard]] bool family_specific() const { return (flags & entry_flag::kFamilySpecific) != 0; }
};

// Every entry of every container that follows one another from the start of `bytes`, in order.
// Checks every header and size field against the container that holds it.
[[nodiscard]] Result<std::vector<Entry>> list_entries(std::span<const std::byte> bytes);

// The entry's payload, decompressed: exactly `uncompressed_size` bytes. Raw entries are copied.
[[nodiscard]] Result<std::vector<std::byte>> payload(const Entry& entry);

struct ParamInfo {
  std::uint32_t offset = 0;  // byte offset in the parameter block
  std::uint32_t size = 0;
  bool operator==(const ParamInfo&) const = default;
};

struct KernelInfo {
  std::string name;               // mangled, as __cudaRegisterFunction passes it
  std::vector<ParamInfo> params;  // by ordinal
  std::uint32_t param_bytes = 0;  // size of the whole parameter block
  bool operator==(const KernelInfo&) const = default;
};

// The kernels of a cubin (function symbols with the CUDA entry bit, 0x10 in st_other; device
// functions lack it), sorted by name, with the layout from their `.nv.info.<name>` records:
// KPARAM_INFO 0x17, the large-block 0x45, CBANK_PARAM_SIZE 0x19 (without it, param_bytes is the
// end of the last parameter). A kernel without `.nv.info.<name>`, ordinals that skip or repeat,
// or parameters past CBANK_PARAM_SIZE are kBadParamInfo, never a guessed layout.
[[nodiscard]] Result<std::vector<KernelInfo>> kernels_from_cubin(std::span<const std::byte> elf);

// The kernels of PTX text, sorted by name, laid out from their `.entry` parameter lists: in order,
// each at its natural alignment (the explicit `.align`, else the element width). On every kernel
// tested (the test kernels with nvcc 13.0 for sm_80 to sm_120, and the 32 kernels of CUDA 12.9's
// libcudadevrt for 15 archs) this equals the cubin layout, param_bytes included: the end of the
// last parameter, not rounded up, as CBANK_PARAM_SIZE is.
[[nodiscard]] Result<std::vector<KernelInfo>> kernels_from_ptx(std::string_view ptx);

struct ModuleInfo {
  std::vector<KernelInfo> kernels;  // sorted by name
  // Whether the image holds device variables the host can change after loading: __device__ and
  // __managed__ variables (.nv.global, .nv.global.init, data in writable sections) and __constant__
  // variables (written with cudaMemcpyToSymbol). Such a module cannot be shared between sessions.
  // From PTX: any top-level `.global` or `.const` variable (conservative: PTX declares printf's
  // format strings as `.global` too).
  bool has_writable_globals = false;
  EntryKind chosen_kind = EntryKind::kCubin;
  std::uint32_t chosen_arch = 0;  // the image's arch; for a bare cubin from its e_flags, for bare
                                  // PTX from `.target` (0 if absent)
};

// Picks the image a device of compute capability `device_arch` (90 for sm_90) would load and
// parses its kernels. As the driver does: a 64-bit cubin of the same major version and an arch
// no higher than the device's (an sm_XXa cubin only for exactly that arch), the highest such;
// else the PTX of the highest arch the device can JIT (arch <= device; compute_XXa only for that
// arch, compute_XXf only within its major version); else kNoCompatibleImage. Among equal archs an
// arch-specific image is preferred, then the first. Like cuModuleLoadData, it also takes a bare
// cubin (ELF magic) or bare PTX text (starting with `//`, `/*` or `.version` after white space),
// which are parsed as they are without an architecture check.
[[nodiscard]] Result<ModuleInfo> parse_module(std::span<const std::byte> image,
                                              std::uint32_t device_arch);

}  // namespace gpubroker::fatbin
