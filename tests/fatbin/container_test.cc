// Containers, entries and payloads: container_size, list_entries, payload.
#include <catch2/catch.hpp>

#include "fatbin/fatbin.h"
#include "test_inputs.h"

namespace gpubroker::fatbin {
namespace {

using testing::Bytes;
using testing::committed;
using testing::store;

// Offsets in a container whose first entry starts right after the 16-byte container header.
constexpr std::size_t kFatSize = 8;
constexpr std::size_t kFirstEntry = 16;
constexpr std::size_t kEntryHeaderSize = 4;
constexpr std::size_t kEntryPayloadSize = 8;
constexpr std::size_t kEntryCompressedSize = 16;
constexpr std::size_t kEntryFlags = 40;
constexpr std::size_t kEntryUncompressedSize = 56;

Bytes concatenated(const Bytes& first, const Bytes& second) {
  Bytes both = first;
  both.insert(both.end(), second.begin(), second.end());
  return both;
}

std::string_view without_trailing_nuls(const std::vector<std::byte>& bytes) {
  std::string_view text = testing::as_text(bytes);
  while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
  return text;
}

FatbinErrc listing_error(std::span<const std::byte> bytes) {
  return testing::error_code(list_entries(bytes));
}

// The error payload() gives for the first entry of a fatbin that lists fine.
FatbinErrc first_payload_error(std::span<const std::byte> bytes) {
  Result<std::vector<Entry>> entries = list_entries(bytes);
  REQUIRE(entries);
  return testing::error_code(payload(entries.value()[0]));
}

TEST_CASE("an nvcc fatbin lists its cubin and its PTX with kind, arch, version and compression",
          "[fatbin][container]") {
  const Bytes fatbin = committed("kernels_sm90_zstd.fatbin");
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  REQUIRE(entries.value().size() == 2);

  const Entry& cubin = entries.value()[0];
  CHECK(cubin.kind == EntryKind::kCubin);
  CHECK(cubin.arch == 90);
  CHECK(cubin.is_64bit());
  CHECK_FALSE(cubin.arch_specific());
  CHECK(cubin.compression == Compression::kZstd);
  CHECK(cubin.offset == kFirstEntry);
  CHECK(cubin.header_size == 64);
  CHECK(cubin.compressed_size == cubin.stored.size());

  const Entry& ptx = entries.value()[1];
  CHECK(ptx.kind == EntryKind::kPtx);
  CHECK(ptx.arch == 90);
  CHECK(ptx.version_major == 9);  // PTX ISA 9.0 from nvcc 13.0
  CHECK(ptx.version_minor == 0);
  CHECK(ptx.header_size == 80);
  CHECK(ptx.compression == Compression::kZstd);
}

// The payload of entry `index` of a committed fatbin, which must be of `kind`.
std::vector<std::byte> entry_content(const char* name, std::size_t index, EntryKind kind) {
  INFO(name << ", entry " << index);
  const Bytes fatbin = committed(name);
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  REQUIRE(entries.value().size() > index);
  const Entry& entry = entries.value()[index];
  REQUIRE(entry.kind == kind);
  Result<std::vector<std::byte>> content = payload(entry);
  REQUIRE(content);
  CHECK(content.value().size() == entry.uncompressed_size);
  return std::move(content).value();
}

constexpr const char* kOneFatbinThreeWays[] = {
    "kernels_sm90_zstd.fatbin", "kernels_sm90_lz4.fatbin", "kernels_sm90_raw.fatbin"};

TEST_CASE("a decompressed cubin is byte for byte the cubin nvcc writes with -cubin",
          "[fatbin][container]") {
  const Bytes cubin = committed("kernels_sm90.cubin");
  for (const char* name : kOneFatbinThreeWays) {
    CHECK(entry_content(name, 0, EntryKind::kCubin) == cubin);
  }
}

TEST_CASE("the PTX of raw, LZ4 and zstd entries is the same text once the NUL padding is cut",
          "[fatbin][container]") {
  std::vector<std::string> texts;
  for (const char* name : kOneFatbinThreeWays) {
    texts.emplace_back(without_trailing_nuls(entry_content(name, 1, EntryKind::kPtx)));
  }
  CHECK(texts[0] == texts[1]);
  CHECK(texts[0] == texts[2]);
  CHECK(texts[0].find(".entry _Z4kern1SPfif") != std::string::npos);
}

TEST_CASE("container_size counts every container that starts where the previous one ends",
          "[fatbin][container]") {
  const Bytes first = committed("kernels_sm90_zstd.fatbin");
  const Bytes second = committed("globals_sm90.fatbin");
  Bytes both = concatenated(first, second);

  Result<std::size_t> size = container_size(both);
  REQUIRE(size);
  CHECK(size.value() == both.size());
  Result<std::size_t> single = single_container_size(both);
  REQUIRE(single);
  CHECK(single.value() == first.size());

  Result<std::vector<Entry>> entries = list_entries(both);
  REQUIRE(entries);
  CHECK(entries.value().size() == 4);

  SECTION("bytes after the last container that are not a container are not counted") {
    Bytes with_tail = both;
    with_tail.resize(both.size() + 100, std::byte{0x5a});
    Result<std::size_t> tail_size = container_size(with_tail.data(), with_tail.size());
    REQUIRE(tail_size);
    CHECK(tail_size.value() == both.size());
  }
  SECTION("the raw-pointer form never reads past its bound") {
    CHECK(testing::error_code(container_size(both.data(), both.size() - 1)) ==
          FatbinErrc::kTruncated);
    Result<std::size_t> first_only = container_size(both.data(), first.size() + 3);
    REQUIRE(first_only);
    CHECK(first_only.value() == first.size());
  }
}

TEST_CASE("a truncated container is kTruncated from every entry point", "[fatbin][container]") {
  const Bytes fatbin = committed("kernels_sm90_zstd.fatbin");
  for (std::size_t keep : {std::size_t{4}, std::size_t{15}, std::size_t{16}, std::size_t{100},
                           fatbin.size() / 2, fatbin.size() - 1}) {
    INFO("keeping " << keep << " of " << fatbin.size() << " bytes");
    const std::span<const std::byte> cut(fatbin.data(), keep);
    CHECK(testing::error_code(container_size(cut)) == FatbinErrc::kTruncated);
    CHECK(listing_error(cut) == FatbinErrc::kTruncated);
    CHECK(testing::error_code(parse_module(cut, 90)) == FatbinErrc::kTruncated);
  }
}

TEST_CASE("an oversized size field gives a specific error, never a read past the input",
          "[fatbin][container]") {
  const Bytes original = committed("kernels_sm90_zstd.fatbin");
  Bytes fatbin = original;

  SECTION("a container fat_size of 2^64 - 1 is kTruncated, without overflow") {
    store(fatbin, kFatSize, ~std::uint64_t{0});
    CHECK(listing_error(fatbin) == FatbinErrc::kTruncated);
  }
  SECTION("an entry payload size past the container is kEntryOutOfBounds") {
    for (std::uint64_t size : {std::uint64_t{1} << 20, ~std::uint64_t{0}, ~std::uint64_t{0} - 63}) {
      store(fatbin, kFirstEntry + kEntryPayloadSize, size);
      CHECK(listing_error(fatbin) == FatbinErrc::kEntryOutOfBounds);
    }
  }
  SECTION("an entry header_size past the container is kEntryOutOfBounds") {
    store(fatbin, kFirstEntry + kEntryHeaderSize, ~std::uint32_t{0});
    CHECK(listing_error(fatbin) == FatbinErrc::kEntryOutOfBounds);
  }
  SECTION("an entry header_size below 64 is kBadHeader") {
    store(fatbin, kFirstEntry + kEntryHeaderSize, std::uint32_t{8});
    CHECK(listing_error(fatbin) == FatbinErrc::kBadHeader);
  }
  SECTION("a compressed size above the payload size is kBadHeader") {
    store(fatbin, kFirstEntry + kEntryCompressedSize, ~std::uint32_t{0});
    CHECK(listing_error(fatbin) == FatbinErrc::kBadHeader);
  }
  SECTION("an uncompressed size above the cap is kTooLarge, before any allocation") {
    store(fatbin, kFirstEntry + kEntryUncompressedSize, kMaxUncompressedSize + 1);
    CHECK(first_payload_error(fatbin) == FatbinErrc::kTooLarge);
    CHECK(testing::error_code(parse_module(fatbin, 90)) == FatbinErrc::kTooLarge);
  }
}

TEST_CASE("a declared uncompressed size the data does not give is kBadCompressedData",
          "[fatbin][container]") {
  for (const char* name : {"kernels_sm90_zstd.fatbin", "kernels_sm90_lz4.fatbin"}) {
    const Bytes original = committed(name);
    Result<std::vector<Entry>> entries = list_entries(original);
    REQUIRE(entries);
    const std::uint64_t real_size = entries.value()[0].uncompressed_size;
    for (std::uint64_t declared :
         {real_size - 1, real_size + 1, real_size * 2, std::uint64_t{1}, kMaxUncompressedSize}) {
      INFO(name << " declaring " << declared << " bytes for " << real_size);
      Bytes fatbin = original;
      store(fatbin, kFirstEntry + kEntryUncompressedSize, declared);
      CHECK(first_payload_error(fatbin) == FatbinErrc::kBadCompressedData);
    }
  }
}

TEST_CASE("corrupt compressed bytes are kBadCompressedData", "[fatbin][container]") {
  for (const char* name : {"kernels_sm90_zstd.fatbin", "kernels_sm90_lz4.fatbin"}) {
    INFO(name);
    Bytes fatbin = committed(name);
    Result<std::vector<Entry>> entries = list_entries(fatbin);
    REQUIRE(entries);
    const Entry cubin = entries.value()[0];
    // Cut the compressed stream short by declaring fewer compressed bytes.
    store(fatbin, kFirstEntry + kEntryCompressedSize,
          static_cast<std::uint32_t>(cubin.compressed_size / 2));
    CHECK(first_payload_error(fatbin) == FatbinErrc::kBadCompressedData);
  }
}

TEST_CASE("legacy-compressed and doubly-flagged entries are refused", "[fatbin][container]") {
  Bytes fatbin = committed("kernels_sm90_raw.fatbin");
  SECTION("legacy compression is listed but payload() gives kUnsupportedCompression") {
    store(fatbin, kFirstEntry + kEntryFlags,
          entry_flag::k64Bit | entry_flag::kLinuxHost | entry_flag::kCompressedLegacy);
    store(fatbin, kFirstEntry + kEntryCompressedSize, std::uint32_t{64});
    store(fatbin, kFirstEntry + kEntryUncompressedSize, std::uint64_t{4096});
    Result<std::vector<Entry>> entries = list_entries(fatbin);
    REQUIRE(entries);
    CHECK(entries.value()[0].compression == Compression::kLegacy);
    CHECK(testing::error_code(payload(entries.value()[0])) == FatbinErrc::kUnsupportedCompression);
  }
  SECTION("an entry flagged both LZ4 and zstd is kBadHeader") {
    store(fatbin, kFirstEntry + kEntryFlags,
          entry_flag::k64Bit | entry_flag::kCompressedLz4 | entry_flag::kCompressedZstd);
    CHECK(listing_error(fatbin) == FatbinErrc::kBadHeader);
  }
}

TEST_CASE("bytes that are no container are kNotAnImage and a new version kUnsupportedVersion",
          "[fatbin][container]") {
  const Bytes empty;
  CHECK(list_entries(empty).error().code == FatbinErrc::kNotAnImage);
  CHECK(container_size(nullptr, 64).error().code == FatbinErrc::kNotAnImage);
  const Bytes cubin = committed("kernels_sm90.cubin");
  CHECK(list_entries(cubin).error().code == FatbinErrc::kNotAnImage);

  Bytes fatbin = committed("kernels_sm90_zstd.fatbin");
  store(fatbin, 4, std::uint16_t{2});
  CHECK(list_entries(fatbin).error().code == FatbinErrc::kUnsupportedVersion);
  CHECK(container_size(fatbin).error().code == FatbinErrc::kUnsupportedVersion);
}

TEST_CASE("zero padding after the last entry of a container is not an entry",
          "[fatbin][container]") {
  const Bytes original = committed("kernels_sm90_zstd.fatbin");
  Bytes padded = original;
  padded.resize(original.size() + 24, std::byte{0});
  store(padded, kFatSize, std::uint64_t{original.size() - 16 + 24});
  Result<std::vector<Entry>> entries = list_entries(padded);
  REQUIRE(entries);
  CHECK(entries.value().size() == 2);

  padded[original.size() + 5] = std::byte{1};  // not padding any more: a cut-off header
  CHECK(listing_error(padded) == FatbinErrc::kEntryOutOfBounds);
}

TEST_CASE("entry headers of 80 and 136 bytes (nvcc -G) are skipped by their own header_size",
          "[fatbin][container]") {
  const Bytes fatbin = committed("kernels_sm90_debug.fatbin");
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  REQUIRE(entries.value().size() == 2);
  CHECK(entries.value()[0].header_size == 80);
  CHECK(entries.value()[1].header_size == 136);
  for (const Entry& entry : entries.value()) {
    CHECK((entry.flags & entry_flag::kDebug) != 0);
    Result<std::vector<std::byte>> bytes = payload(entry);
    REQUIRE(bytes);
    CHECK(bytes.value().size() == entry.uncompressed_size);
  }
}

TEST_CASE("error descriptions name the code and the place", "[fatbin][container]") {
  Bytes fatbin = committed("kernels_sm90_zstd.fatbin");
  store(fatbin, kFirstEntry + kEntryHeaderSize, std::uint32_t{8});
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE_FALSE(entries);
  CHECK(describe(entries.error()) ==
        "header invalid: entry 0 at offset 16: header_size 8 is below 64");
}

}  // namespace
}  // namespace gpubroker::fatbin
