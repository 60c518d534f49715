// Hostile input: random bytes and mutated real fatbins must give a value or an error, never a
// crash, a hang or a read out of bounds (run it under -Db_sanitize=address,undefined to see the
// last). Deterministic: every generator has a fixed seed.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "fatbin/fatbin.h"
#include "test_inputs.h"

namespace gpubroker::fatbin {
namespace {

using testing::Bytes;
using testing::committed;
using testing::store;

struct Outcomes {
  int parsed = 0;
  int rejected = 0;
};

bool inside(std::span<const std::byte> part, std::span<const std::byte> whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// Calls every entry point on `bytes` and checks what holds for any result.
void exercise(std::span<const std::byte> bytes, Outcomes& outcomes) {
  Result<std::size_t> size = container_size(bytes);
  if (size) REQUIRE(size.value() <= bytes.size());

  Result<std::vector<Entry>> entries = list_entries(bytes);
  if (entries) {
    for (const Entry& entry : entries.value()) {
      REQUIRE(inside(entry.stored, bytes));
      Result<std::vector<std::byte>> content = payload(entry);
      if (!content) continue;
      REQUIRE(content.value().size() == entry.uncompressed_size);
      if (entry.kind == EntryKind::kCubin) (void)kernels_from_cubin(content.value());
      if (entry.kind == EntryKind::kPtx) (void)kernels_from_ptx(testing::as_text(content.value()));
    }
  }
  for (std::uint32_t device : {90u, 120u}) {
    Result<ModuleInfo> module = parse_module(bytes, device);
    ++(module ? outcomes.parsed : outcomes.rejected);
  }
  (void)kernels_from_cubin(bytes);
  (void)kernels_from_ptx(testing::as_text(bytes));
}

using Field = std::pair<std::size_t, std::size_t>;  // (offset, width)
constexpr Field kEntryFields[] = {{4, 4}, {8, 8}, {16, 4}, {28, 4}, {40, 8}, {56, 8}};
constexpr Field kElfHeaderFields[] = {{0x28, 8}, {0x3a, 2}, {0x3c, 2}, {0x3e, 2}};
constexpr Field kSectionHeaderFields[] = {{0, 4}, {24, 8}, {32, 8}, {40, 4}, {44, 4}};

// Offsets of the size and offset fields an attacker would lie in: the container and entry headers
// of a fatbin, the ELF and section headers of a cubin.
std::vector<Field> size_fields(const Bytes& bytes) {
  std::vector<Field> fields;
  Result<std::vector<Entry>> entries = list_entries(bytes);
  if (entries) {
    fields.emplace_back(6, 2);
    fields.emplace_back(8, 8);
    for (const Entry& entry : entries.value()) {
      for (auto [offset, width] : kEntryFields) {
        fields.emplace_back(entry.offset + offset, width);
      }
    }
  } else if (bytes.size() >= 64 && bytes[0] == std::byte{0x7f}) {
    for (auto [offset, width] : kElfHeaderFields) {
      fields.emplace_back(offset, width);
    }
    std::uint64_t table = 0;
    std::memcpy(&table, bytes.data() + 0x28, 8);
    for (std::uint64_t header = table; header + 64 <= bytes.size(); header += 64) {
      for (auto [offset, width] : kSectionHeaderFields) {
        fields.emplace_back(header + offset, width);
      }
    }
  }
  return fields;
}

Bytes mutate(const Bytes& original, const std::vector<Field>& fields, std::mt19937_64& random) {
  Bytes bytes = original;
  auto pick = [&](std::size_t bound) {
    return std::uniform_int_distribution<std::size_t>(0, bound - 1)(random);
  };
  switch (pick(fields.empty() ? 5 : 6)) {
    case 0:  // flip a few bits
      for (std::size_t flips = 1 + pick(8); flips > 0; --flips) {
        bytes[pick(bytes.size())] ^= static_cast<std::byte>(1u << pick(8));
      }
      break;
    case 1:  // cut the tail off
      bytes.resize(pick(bytes.size()));
      break;
    case 2: {  // overwrite a run of bytes
      const std::size_t at = pick(bytes.size());
      const std::size_t length = std::min(1 + pick(16), bytes.size() - at);
      for (std::size_t i = 0; i < length; ++i) bytes[at + i] = static_cast<std::byte>(random());
      break;
    }
    case 3: {  // insert random bytes
      const std::size_t at = pick(bytes.size());
      Bytes inserted(1 + pick(32));
      for (std::byte& b : inserted) b = static_cast<std::byte>(random());
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), inserted.begin(),
                   inserted.end());
      break;
    }
    case 4: {  // cut a piece out of the middle
      const std::size_t at = pick(bytes.size());
      const std::size_t length = std::min(1 + pick(64), bytes.size() - at);
      bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                  bytes.begin() + static_cast<std::ptrdiff_t>(at + length));
      break;
    }
    default: {  // lie in a size or offset field
      const auto [at, width] = fields[pick(fields.size())];
      if (at + width > bytes.size()) break;
      std::uint64_t value = 0;
      std::memcpy(&value, bytes.data() + at, width);
      const std::uint64_t lies[] = {0,
                                    1,
                                    value - 1,
                                    value + 1,
                                    value * 2,
                                    value / 2,
                                    ~std::uint64_t{0},
                                    ~std::uint64_t{0} >> 1,
                                    random(),
                                    std::uint64_t{original.size()}};
      value = lies[pick(std::size(lies))];
      std::memcpy(bytes.data() + at, &value, width);
      break;
    }
  }
  return bytes;
}

TEST_CASE("thousands of random byte strings give an error or a value, never a crash",
          "[fatbin][robustness]") {
  std::mt19937_64 random(0x5eed0001);
  Outcomes outcomes;
  for (int round = 0; round < 3000; ++round) {
    Bytes bytes(std::uniform_int_distribution<std::size_t>(0, 600)(random));
    for (std::byte& b : bytes) b = static_cast<std::byte>(random());
    // Most rounds start like a fatbin, a cubin or PTX so that the parser gets past the magic.
    switch (round % 4) {
      case 0:
        if (bytes.size() >= 16) {
          store(bytes, 0, kContainerMagic);
          store(bytes, 4, std::uint16_t{1});
          store(bytes, 6, std::uint16_t{16});
          store(bytes, 8, std::uint64_t{bytes.size() - 16 - random() % 4});
        }
        if (bytes.size() >= 32)
          store(bytes, 20, static_cast<std::uint32_t>(64 + 16 * (random() % 3)));
        break;
      case 1:
        if (bytes.size() >= 6) {
          const unsigned char elf[] = {0x7f, 'E', 'L', 'F', 2, 1};
          std::memcpy(bytes.data(), elf, sizeof elf);
        }
        break;
      case 2: {
        const std::string_view text = ".version 9.0\n.entry k(.param .u32 a";
        if (bytes.size() >= text.size()) std::memcpy(bytes.data(), text.data(), text.size());
        break;
      }
      default: break;
    }
    exercise(bytes, outcomes);
  }
  CHECK(outcomes.rejected > 0);
}

TEST_CASE("thousands of mutations of real fatbins, cubins and PTX give an error or a value",
          "[fatbin][robustness]") {
  std::mt19937_64 random(0x5eed0002);
  int files = 0;
  for (const std::string& name : testing::committed_image_names()) {
    INFO(name);
    const Bytes original = committed(name);
    const auto fields = size_fields(original);
    Outcomes outcomes;
    for (int round = 0; round < 400; ++round) {
      exercise(mutate(original, fields, random), outcomes);
    }
    // Mutations that keep the image valid and ones that break it must both have happened.
    CHECK(outcomes.parsed > 0);
    CHECK(outcomes.rejected > 0);
    ++files;
  }
  CHECK(files >= 10);
}

TEST_CASE("every prefix of a real fatbin is parsed or rejected", "[fatbin][robustness]") {
  const Bytes fatbin = committed("kernels_sm90_lz4.fatbin");
  Outcomes outcomes;
  for (std::size_t keep = 0; keep < fatbin.size(); keep += 7) {
    // A copy of exactly `keep` bytes, so that the sanitizer sees any read past its end.
    const Bytes prefix(fatbin.begin(), fatbin.begin() + static_cast<std::ptrdiff_t>(keep));
    exercise(prefix, outcomes);
  }
  CHECK(outcomes.parsed == 0);
}

}  // namespace
}  // namespace gpubroker::fatbin
