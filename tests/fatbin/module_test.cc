// parse_module: choosing the image a device loads, bare images, and nvcc's compression modes.
#include <catch2/catch.hpp>

#include "fatbin/fatbin.h"
#include "test_inputs.h"
#include "tests/support/skip.h"

namespace gpubroker::fatbin {
namespace {

using testing::Bytes;
using testing::committed;
using testing::expected_kernels_cu;

ModuleInfo parsed(std::span<const std::byte> image, std::uint32_t device_arch) {
  Result<ModuleInfo> module = parse_module(image, device_arch);
  INFO((module ? std::string() : describe(module.error())));
  REQUIRE(module);
  return std::move(module).value();
}

TEST_CASE("parse_module picks the cubin or PTX the driver would load for each device",
          "[fatbin][module]") {
  // kernels_multi_arch.fatbin: cubins sm_80, sm_86, sm_90a, sm_100f, sm_120; PTX compute_80 and
  // compute_90a.
  const Bytes fatbin = committed("kernels_multi_arch.fatbin");
  struct Expectation {
    std::uint32_t device;
    EntryKind kind;
    std::uint32_t arch;
  };
  for (const Expectation& expected : {
           Expectation{80, EntryKind::kCubin, 80},
           Expectation{86, EntryKind::kCubin, 86},
           Expectation{89, EntryKind::kCubin, 86},    // highest of the same major version
           Expectation{90, EntryKind::kCubin, 90},    // sm_90a: exact match only
           Expectation{100, EntryKind::kCubin, 100},  // sm_100f
           Expectation{103, EntryKind::kCubin, 100},  // sm_100f runs on its family
           Expectation{110, EntryKind::kPtx, 80},     // no cubin; compute_90a is sm_90-only
           Expectation{120, EntryKind::kCubin, 120},
           Expectation{121, EntryKind::kCubin, 120},
       }) {
    INFO("device sm_" << expected.device);
    const ModuleInfo module = parsed(fatbin, expected.device);
    CHECK(module.chosen_kind == expected.kind);
    CHECK(module.chosen_arch == expected.arch);
    CHECK(module.kernels == expected_kernels_cu());
    CHECK_FALSE(module.has_writable_globals);
  }
}

TEST_CASE("a device older than every image gets kNoCompatibleImage", "[fatbin][module]") {
  CHECK(testing::error_code(parse_module(committed("kernels_multi_arch.fatbin"), 75)) ==
        FatbinErrc::kNoCompatibleImage);

  CHECK(testing::error_code(parse_module(committed("kernels_sm90_sass.fatbin"), 100)) ==
        FatbinErrc::kNoCompatibleImage);
}

TEST_CASE("an sm_XXa image is chosen only for exactly that arch", "[fatbin][module]") {
  const Bytes fatbin = committed("kernels_multi_arch.fatbin");
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  int arch_specific = 0;
  for (const Entry& entry : entries.value()) {
    if (entry.arch_specific()) {
      CHECK(entry.arch == 90);
      ++arch_specific;
    }
    if (entry.arch == 100) CHECK(entry.family_specific());
  }
  CHECK(arch_specific == 2);  // the sm_90a cubin and the compute_90a PTX
  CHECK(parsed(fatbin, 90).chosen_arch == 90);
  CHECK(parsed(fatbin, 110).chosen_arch == 80);
}

TEST_CASE("a bare cubin and bare PTX are accepted as cuModuleLoadData accepts them",
          "[fatbin][module]") {
  const ModuleInfo cubin = parsed(committed("kernels_sm90.cubin"), 90);
  CHECK(cubin.chosen_kind == EntryKind::kCubin);
  CHECK(cubin.chosen_arch == 90);  // from e_flags
  CHECK(cubin.kernels == expected_kernels_cu());

  const ModuleInfo ptx = parsed(committed("kernels_sm90.ptx"), 90);
  CHECK(ptx.chosen_kind == EntryKind::kPtx);
  CHECK(ptx.chosen_arch == 90);  // from .target
  CHECK(ptx.kernels == expected_kernels_cu());

  const std::string_view leading_space =
      "\n\n  .version 9.0\n.target sm_80\n.entry k(.param .u32 a) { }";
  CHECK(parsed(testing::as_bytes(leading_space), 90).kernels ==
        std::vector<KernelInfo>{{"k", {{0, 4}}, 4}});

  CHECK(testing::error_code(parse_module(testing::as_bytes("hello, world"), 90)) ==
        FatbinErrc::kNotAnImage);
}

TEST_CASE("raw, LZ4, zstd, PTX-only and SASS-only fatbins parse to the same kernel layouts",
          "[fatbin][module]") {
  struct Sample {
    const char* name;
    EntryKind chosen;
  };
  for (const Sample& sample : {Sample{"kernels_sm90_raw.fatbin", EntryKind::kCubin},
                               Sample{"kernels_sm90_lz4.fatbin", EntryKind::kCubin},
                               Sample{"kernels_sm90_zstd.fatbin", EntryKind::kCubin},
                               Sample{"kernels_compute90_ptx.fatbin", EntryKind::kPtx},
                               Sample{"kernels_sm90_sass.fatbin", EntryKind::kCubin},
                               Sample{"kernels_sm90_debug.fatbin", EntryKind::kCubin},
                               Sample{"kernels_multi_arch.fatbin", EntryKind::kCubin}}) {
    INFO(sample.name);
    const ModuleInfo module = parsed(committed(sample.name), 90);
    CHECK(module.chosen_kind == sample.chosen);
    CHECK(module.kernels == expected_kernels_cu());
  }
}

TEST_CASE("every compression mode of this machine's nvcc gives the same kernel layouts",
          "[fatbin][module][nvcc]") {
  if (!testing::have_nvcc()) SKIP_CASE("nvcc was not found at configure time: no freshly built fatbins");
  struct Variant {
    const char* name;
    std::vector<std::pair<EntryKind, Compression>> entries;  // what nvcc 13.0 writes
  };
  using enum EntryKind;
  using enum Compression;
  const std::vector<Variant> variants = {
      {"kernels_sm90_raw.fatbin", {{kCubin, kNone}, {kPtx, kNone}}},       // --no-compress
      {"kernels_sm90_balance.fatbin", {{kCubin, kNone}, {kPtx, kZstd}}},   // the default
      {"kernels_sm90_speed.fatbin", {{kCubin, kNone}, {kPtx, kLz4}}},      // --compress-mode=speed
      {"kernels_sm90_size.fatbin", {{kCubin, kZstd}, {kPtx, kZstd}}},      // --compress-mode=size
      {"kernels_sm90_lz4_all.fatbin", {{kCubin, kLz4}, {kPtx, kLz4}}},     // speed + compress-all
      {"kernels_sm90_zstd_all.fatbin", {{kCubin, kZstd}, {kPtx, kZstd}}},  // -compress-all
      {"kernels_sm90_sass.fatbin", {{kCubin, kNone}}},                     // code=sm_90 only
      {"kernels_compute90_ptx.fatbin", {{kPtx, kZstd}}},                   // code=compute_90 only
      {"kernels_sm90_lineinfo.fatbin", {{kCubin, kNone}, {kPtx, kZstd}}},  // -lineinfo
  };
  for (const Variant& variant : variants) {
    INFO(variant.name);
    const Bytes fatbin = *testing::generated(variant.name);
    Result<std::vector<Entry>> entries = list_entries(fatbin);
    REQUIRE(entries);
    std::vector<std::pair<EntryKind, Compression>> seen;
    for (const Entry& entry : entries.value()) seen.emplace_back(entry.kind, entry.compression);
    CHECK(seen == variant.entries);
    CHECK(parsed(fatbin, 90).kernels == expected_kernels_cu());
  }
  for (const char* name : {"kernels_sm90.cubin", "kernels_sm90.ptx"}) {
    INFO(name);
    CHECK(parsed(*testing::generated(name), 90).kernels == expected_kernels_cu());
  }
}

TEST_CASE("of two containers back to back, the first one's image wins a tie", "[fatbin][module]") {
  // What container_size hands the broker when two units' fatbins lie back to back.
  Bytes both = committed("globals_sm90.fatbin");
  const Bytes kernels = committed("kernels_sm90_zstd.fatbin");
  both.insert(both.end(), kernels.begin(), kernels.end());
  const ModuleInfo module = parsed(both, 90);
  CHECK(module.kernels == std::vector<KernelInfo>{{"_Z8count_upPi", {{0, 8}}, 8}});
}

}  // namespace
}  // namespace gpubroker::fatbin
