// Fatbin containers and their entries: container_size, list_entries, payload.
//
// Layouts (cuda-runtime-abi.md section 4): a 16-byte container header, then entries, each an
// entry header of its own `header_size` (at least 64 bytes) followed by its payload.
#include <dlfcn.h>
#include <fmt/core.h>
#include <lz4.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "fatbin/bytes.h"
#include "fatbin/fatbin.h"

namespace gpubroker::fatbin {
namespace {

using detail::fits;
using detail::load;
using detail::load_checked;
using detail::make_error;

constexpr std::uint16_t kContainerVersion = 1;
constexpr std::size_t kEntryHeaderMinSize = 64;

// Field offsets inside an entry header.
constexpr std::size_t kEntryKind = 0;
constexpr std::size_t kEntryHeaderSize = 4;
constexpr std::size_t kEntryPayloadSize = 8;
constexpr std::size_t kEntryCompressedSize = 16;
constexpr std::size_t kEntryVersionMinor = 24;
constexpr std::size_t kEntryVersionMajor = 26;
constexpr std::size_t kEntryArch = 28;
constexpr std::size_t kEntryFlags = 40;
constexpr std::size_t kEntryUncompressedSize = 56;

// The longest output an LZ4 block can give per input byte: every 0xFF length byte adds 255.
constexpr std::uint64_t kLz4MaxExpansion = 255;

struct ContainerExtent {
  std::size_t header_size;
  std::uint64_t fat_size;
  [[nodiscard]] std::size_t total() const { return header_size + fat_size; }
};

// The container starting at `offset`, checked to lie inside `bytes`.
Result<ContainerExtent> read_container(std::span<const std::byte> bytes, std::size_t offset,
                                       std::size_t index) {
  auto magic = load<std::uint32_t>(bytes, offset);
  if (!magic || *magic != kContainerMagic) {
    if (index == 0 && magic) {
      return make_error(FatbinErrc::kNotAnImage, fmt::format("magic {:#010x}", *magic));
    }
    if (index == 0) {
      return make_error(FatbinErrc::kNotAnImage,
                        fmt::format("{} bytes, too short for a container", bytes.size()));
    }
    return make_error(FatbinErrc::kNotAnImage,
                      fmt::format("container {} at offset {}", index, offset));
  }
  if (!fits(bytes.size(), offset, kContainerHeaderSize)) {
    return make_error(FatbinErrc::kTruncated,
                      fmt::format("container {} at offset {}: {} bytes left, its header needs {}",
                                  index, offset, bytes.size() - offset, kContainerHeaderSize));
  }
  const auto version = load_checked<std::uint16_t>(bytes, offset + 4);
  const auto header_size = load_checked<std::uint16_t>(bytes, offset + 6);
  const auto fat_size = load_checked<std::uint64_t>(bytes, offset + 8);
  if (version != kContainerVersion) {
    return make_error(FatbinErrc::kUnsupportedVersion,
                      fmt::format("container {} at offset {}: version {}", index, offset, version));
  }
  if (header_size < kContainerHeaderSize) {
    return make_error(FatbinErrc::kBadHeader,
                      fmt::format("container {} at offset {}: header_size {} is below {}", index,
                                  offset, header_size, kContainerHeaderSize));
  }
  if (!fits(bytes.size(), offset, header_size) ||
      !fits(bytes.size(), offset + header_size, fat_size)) {
    return make_error(FatbinErrc::kTruncated,
                      fmt::format("container {} at offset {}: declares {} + {} bytes, {} are there",
                                  index, offset, header_size, fat_size, bytes.size() - offset));
  }
  return ContainerExtent{header_size, fat_size};
}

// Calls visit(offset, extent) for each container that follows the previous one without a gap.
template <class Visit>
Result<std::size_t> walk_containers(std::span<const std::byte> bytes, Visit&& visit) {
  std::size_t offset = 0;
  for (std::size_t index = 0;; ++index) {
    Result<ContainerExtent> extent = read_container(bytes, offset, index);
    if (!extent) return extent.error();
    Result<void> visited = visit(offset, extent.value());
    if (!visited) return visited.error();
    offset += extent.value().total();
    auto next_magic = load<std::uint32_t>(bytes, offset);
    if (!next_magic || *next_magic != kContainerMagic) return offset;
  }
}

bool all_zero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

Result<Compression> compression_of(std::uint64_t flags) {
  const bool legacy = (flags & entry_flag::kCompressedLegacy) != 0;
  const bool lz4 = (flags & entry_flag::kCompressedLz4) != 0;
  const bool zstd = (flags & entry_flag::kCompressedZstd) != 0;
  if (int{legacy} + int{lz4} + int{zstd} > 1) {
    return make_error(FatbinErrc::kBadHeader,
                      fmt::format("flags {:#x} name several compressions", flags));
  }
  if (legacy) return Compression::kLegacy;
  if (lz4) return Compression::kLz4;
  if (zstd) return Compression::kZstd;
  return Compression::kNone;
}

// Appends the entries of the container whose entries occupy [begin, end) of `bytes`.
Result<void> read_entries(std::span<const std::byte> bytes, std::size_t begin, std::size_t end,
                          std::vector<Entry>& entries) {
  std::size_t offset = begin;
  while (offset < end) {
    const std::size_t left = end - offset;
    const auto where = [&] { return fmt::format("entry {} at offset {}", entries.size(), offset); };
    // Zero bytes after the last entry are padding; anything else is an entry header.
    if (all_zero(bytes.subspan(offset, left))) return boost::outcome_v2::success();
    if (left < kEntryHeaderMinSize) {
      return make_error(FatbinErrc::kEntryOutOfBounds,
                        fmt::format("{}: {} bytes left in the container, a header needs {}",
                                    where(), left, kEntryHeaderMinSize));
    }
    Entry entry;
    entry.offset = offset;
    entry.kind = static_cast<EntryKind>(load_checked<std::uint16_t>(bytes, offset + kEntryKind));
    entry.header_size = load_checked<std::uint32_t>(bytes, offset + kEntryHeaderSize);
    const auto payload_size = load_checked<std::uint64_t>(bytes, offset + kEntryPayloadSize);
    entry.compressed_size = load_checked<std::uint32_t>(bytes, offset + kEntryCompressedSize);
    entry.version_minor = load_checked<std::uint16_t>(bytes, offset + kEntryVersionMinor);
    entry.version_major = load_checked<std::uint16_t>(bytes, offset + kEntryVersionMajor);
    entry.arch = load_checked<std::uint32_t>(bytes, offset + kEntryArch);
    entry.flags = load_checked<std::uint64_t>(bytes, offset + kEntryFlags);
    const auto declared_uncompressed =
        load_checked<std::uint64_t>(bytes, offset + kEntryUncompressedSize);

    if (entry.header_size < kEntryHeaderMinSize) {
      return make_error(FatbinErrc::kBadHeader,
                        fmt::format("{}: header_size {} is below {}", where(), entry.header_size,
                                    kEntryHeaderMinSize));
    }
    if (entry.header_size > left) {
      return make_error(FatbinErrc::kEntryOutOfBounds,
                        fmt::format("{}: header_size {} but {} bytes left in the container",
                                    where(), entry.header_size, left));
    }
    if (payload_size > left - entry.header_size) {
      return make_error(FatbinErrc::kEntryOutOfBounds,
                        fmt::format("{}: payload of {} bytes but {} left in the container", where(),
                                    payload_size, left - entry.header_size));
    }
    Result<Compression> compression = compression_of(entry.flags);
    if (!compression) {
      return make_error(compression.error().code,
                        fmt::format("{}: {}", where(), compression.error().detail));
    }
    entry.compression = compression.value();
    const std::size_t payload_offset = offset + entry.header_size;
    if (entry.compression == Compression::kNone) {
      // Raw entries leave the uncompressed-size field 0; the payload is the image.
      entry.compressed_size = 0;
      entry.uncompressed_size = payload_size;
      entry.stored = bytes.subspan(payload_offset, payload_size);
    } else {
      if (entry.compressed_size == 0 || entry.compressed_size > payload_size) {
        return make_error(FatbinErrc::kBadHeader,
                          fmt::format("{}: compressed size {} with a payload of {} bytes", where(),
                                      entry.compressed_size, payload_size));
      }
      if (declared_uncompressed == 0) {
        return make_error(FatbinErrc::kBadHeader,
                          fmt::format("{}: compressed, with uncompressed size 0", where()));
      }
      entry.uncompressed_size = declared_uncompressed;
      entry.stored = bytes.subspan(payload_offset, entry.compressed_size);
    }
    entries.push_back(entry);
    offset = payload_offset + payload_size;
  }
  return boost::outcome_v2::success();
}

std::string describe_entry(const Entry& entry) {
  return fmt::format("entry at offset {} (kind {}, arch {})", entry.offset,
                     static_cast<unsigned>(entry.kind), entry.arch);
}

// The decompressors are loaded on first use rather than linked: a runner that never launches a
// kernel from a compressed image (Ollama's discovery pass, say) does not load them at start, where
// every library costs the first call its search and relocation.
struct Lz4 {
  decltype(&LZ4_decompress_safe) decompress_safe = nullptr;
};
struct Zstd {
  decltype(&ZSTD_createDCtx) create = nullptr;
  decltype(&ZSTD_freeDCtx) free = nullptr;
  decltype(&ZSTD_decompressStream) decompress_stream = nullptr;
  decltype(&ZSTD_isError) is_error = nullptr;
  decltype(&ZSTD_getErrorName) error_name = nullptr;
};

template <class F>
bool resolve(void* library, const char* name, F& function) {
  function = library != nullptr ? reinterpret_cast<F>(::dlsym(library, name)) : nullptr;
  return function != nullptr;
}

// Null when the library or one of its functions is missing.
const Lz4* lz4() {
  static const Lz4* loaded = [] () -> const Lz4* {
    static Lz4 table;
    void* library = ::dlopen("liblz4.so.1", RTLD_NOW | RTLD_LOCAL);
    return resolve(library, "LZ4_decompress_safe", table.decompress_safe) ? &table : nullptr;
  }();
  return loaded;
}

const Zstd* zstd() {
  static const Zstd* loaded = [] () -> const Zstd* {
    static Zstd table;
    void* library = ::dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    const bool complete = resolve(library, "ZSTD_createDCtx", table.create) &&
                          resolve(library, "ZSTD_freeDCtx", table.free) &&
                          resolve(library, "ZSTD_decompressStream", table.decompress_stream) &&
                          resolve(library, "ZSTD_isError", table.is_error) &&
                          resolve(library, "ZSTD_getErrorName", table.error_name);
    return complete ? &table : nullptr;
  }();
  return loaded;
}

Result<std::vector<std::byte>> decompress_lz4(const Entry& entry) {
  const Lz4* lz4_library = lz4();
  if (lz4_library == nullptr) {
    return make_error(FatbinErrc::kUnsupportedCompression,
                      fmt::format("{}: LZ4-compressed, and liblz4.so.1 cannot be loaded", describe_entry(entry)));
  }
  const std::uint64_t in_size = entry.stored.size();
  const std::uint64_t out_size = entry.uncompressed_size;
  if (in_size > INT_MAX || out_size > in_size * kLz4MaxExpansion + 1024) {
    return make_error(
        FatbinErrc::kBadCompressedData,
        fmt::format("{}: {} LZ4 bytes cannot give {}", describe_entry(entry), in_size, out_size));
  }
  std::vector<std::byte> out(out_size);
  const int produced = lz4_library->decompress_safe(reinterpret_cast<const char*>(entry.stored.data()),
                                           reinterpret_cast<char*>(out.data()),
                                           static_cast<int>(in_size), static_cast<int>(out_size));
  if (produced < 0 || static_cast<std::uint64_t>(produced) != out_size) {
    return make_error(FatbinErrc::kBadCompressedData,
                      fmt::format("{}: LZ4 block gave {} of {} bytes", describe_entry(entry),
                                  produced, out_size));
  }
  return out;
}

struct FreeZstdContext {
  void operator()(ZSTD_DCtx* context) const { zstd()->free(context); }
};

// Streams the frame(s) into a buffer that grows with what the data really produces, so a frame
// that merely claims a huge size costs no more memory than it decodes to.
Result<std::vector<std::byte>> decompress_zstd(const Entry& entry) {
  const std::uint64_t out_size = entry.uncompressed_size;
  const Zstd* z = zstd();
  if (z == nullptr) {
    return make_error(FatbinErrc::kUnsupportedCompression,
                      fmt::format("{}: zstd-compressed, and libzstd.so.1 cannot be loaded", describe_entry(entry)));
  }
  std::unique_ptr<ZSTD_DCtx, FreeZstdContext> context(z->create());
  if (!context) return make_error(FatbinErrc::kOutOfMemory, "ZSTD_createDCtx");

  constexpr std::uint64_t kFirstChunk = std::uint64_t{1} << 20;
  std::vector<std::byte> out(std::min(out_size, std::max(kFirstChunk, 8 * entry.stored.size())));
  ZSTD_inBuffer in{entry.stored.data(), entry.stored.size(), 0};
  std::size_t produced = 0;
  for (;;) {
    if (produced == out.size() && out.size() < out_size) {
      out.resize(std::min<std::uint64_t>(out_size, 2 * out.size()));
    }
    ZSTD_outBuffer sink{out.data(), out.size(), produced};
    const std::size_t consumed_before = in.pos;
    const std::size_t status = z->decompress_stream(context.get(), &sink, &in);
    if (z->is_error(status)) {
      return make_error(
          FatbinErrc::kBadCompressedData,
          fmt::format("{}: zstd: {}", describe_entry(entry), z->error_name(status)));
    }
    const bool progressed = sink.pos != produced || in.pos != consumed_before;
    produced = sink.pos;
    if (status == 0 && in.pos == in.size) break;  // the last frame is complete
    if (!progressed) {
      return make_error(FatbinErrc::kBadCompressedData,
                        produced == out_size
                            ? fmt::format("{}: zstd data gives more than the declared {} bytes",
                                          describe_entry(entry), out_size)
                            : fmt::format("{}: zstd data ends mid-frame after {} bytes",
                                          describe_entry(entry), produced));
    }
  }
  if (produced != out_size) {
    return make_error(FatbinErrc::kBadCompressedData,
                      fmt::format("{}: zstd data gave {} of {} bytes", describe_entry(entry),
                                  produced, out_size));
  }
  return out;
}

}  // namespace

Result<std::size_t> single_container_size(std::span<const std::byte> bytes) {
  return detail::without_exceptions([&]() -> Result<std::size_t> {
    Result<ContainerExtent> extent = read_container(bytes, 0, 0);
    if (!extent) return extent.error();
    return extent.value().total();
  });
}

Result<std::size_t> container_size(std::span<const std::byte> bytes) {
  return detail::without_exceptions([&]() -> Result<std::size_t> {
    return walk_containers(bytes, [](std::size_t, const ContainerExtent&) -> Result<void> {
      return boost::outcome_v2::success();
    });
  });
}

Result<std::size_t> container_size(const void* data, std::size_t max_bytes) {
  if (data == nullptr) return make_error(FatbinErrc::kNotAnImage, "null pointer");
  return container_size(std::span(static_cast<const std::byte*>(data), max_bytes));
}

Result<std::vector<Entry>> list_entries(std::span<const std::byte> bytes) {
  return detail::without_exceptions([&]() -> Result<std::vector<Entry>> {
    std::vector<Entry> entries;
    Result<std::size_t> walked =
        walk_containers(bytes, [&](std::size_t offset, const ContainerExtent& extent) {
          const std::size_t begin = offset + extent.header_size;
          return read_entries(bytes, begin, begin + extent.fat_size, entries);
        });
    if (!walked) return walked.error();
    return entries;
  });
}

Result<std::vector<std::byte>> payload(const Entry& entry) {
  return detail::without_exceptions([&]() -> Result<std::vector<std::byte>> {
    if (entry.uncompressed_size > kMaxUncompressedSize) {
      return make_error(
          FatbinErrc::kTooLarge,
          fmt::format("{}: {} bytes uncompressed, the limit is {}", describe_entry(entry),
                      entry.uncompressed_size, kMaxUncompressedSize));
    }
    switch (entry.compression) {
      case Compression::kNone:
        if (entry.stored.size() != entry.uncompressed_size) {
          return make_error(
              FatbinErrc::kBadHeader,
              fmt::format("{}: {} bytes stored raw, {} declared", describe_entry(entry),
                          entry.stored.size(), entry.uncompressed_size));
        }
        return std::vector<std::byte>(entry.stored.begin(), entry.stored.end());
      case Compression::kLz4: return decompress_lz4(entry);
      case Compression::kZstd: return decompress_zstd(entry);
      case Compression::kLegacy: break;
    }
    return make_error(
        FatbinErrc::kUnsupportedCompression,
        fmt::format("{}: legacy compression (flags {:#x})", describe_entry(entry), entry.flags));
  });
}

}  // namespace gpubroker::fatbin
