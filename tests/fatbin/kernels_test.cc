// Kernel parameter layouts from cubins (.nv.info records) and from PTX (.entry declarations).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include "fatbin/fatbin.h"
#include "synthetic_cubin.h"
#include "test_inputs.h"
#include "tests/support/skip.h"

namespace gpubroker::fatbin {
namespace {

using testing::Bytes;
using testing::committed;
using testing::expected_kernels_cu;
using testing::inline_record;
using testing::join;
using testing::kparam_word;
using testing::make_cubin;
using testing::param_record;
using testing::SyntheticKernel;
using testing::SyntheticVariable;

constexpr std::uint8_t kParamInfo = 0x17;
constexpr std::uint8_t kLargeParamInfo = 0x45;
constexpr std::uint8_t kBankSize = 0x19;

const KernelInfo& find_kernel(const std::vector<KernelInfo>& kernels, std::string_view name) {
  auto found = std::find_if(kernels.begin(), kernels.end(),
                            [&](const KernelInfo& kernel) { return kernel.name == name; });
  INFO("kernel " << name);
  REQUIRE(found != kernels.end());
  return *found;
}

std::vector<KernelInfo> cubin_kernels(const Bytes& cubin) {
  Result<std::vector<KernelInfo>> kernels = kernels_from_cubin(cubin);
  INFO((kernels ? std::string() : describe(kernels.error())));
  REQUIRE(kernels);
  return kernels.value();
}

std::vector<KernelInfo> ptx_kernels(std::string_view ptx) {
  Result<std::vector<KernelInfo>> kernels = kernels_from_ptx(ptx);
  INFO((kernels ? std::string() : describe(kernels.error())));
  REQUIRE(kernels);
  return kernels.value();
}

// Every cubin of the fatbin against every PTX of it: the layouts must agree kernel by kernel.
void check_ptx_matches_cubins(const Bytes& fatbin) {
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  std::vector<std::vector<KernelInfo>> from_ptx;
  std::vector<std::pair<std::uint32_t, std::vector<KernelInfo>>> from_cubins;
  for (const Entry& entry : entries.value()) {
    Result<std::vector<std::byte>> bytes = payload(entry);
    REQUIRE(bytes);
    if (entry.kind == EntryKind::kPtx)
      from_ptx.push_back(ptx_kernels(testing::as_text(bytes.value())));
    if (entry.kind == EntryKind::kCubin)
      from_cubins.emplace_back(entry.arch, cubin_kernels(bytes.value()));
  }
  REQUIRE_FALSE(from_ptx.empty());
  REQUIRE_FALSE(from_cubins.empty());
  for (const auto& ptx : from_ptx) {
    for (const auto& [arch, cubin] : from_cubins) {
      INFO("cubin for sm_" << arch);
      CHECK(ptx == cubin);
    }
  }
}

TEST_CASE("a struct parameter's layout comes from the cubin's KPARAM_INFO records",
          "[fatbin][cubin]") {
  const std::vector<KernelInfo> kernels = cubin_kernels(committed("kernels_sm90.cubin"));
  const KernelInfo& kern = find_kernel(kernels, "_Z4kern1SPfif");
  // kern(S /*24 bytes*/, float*, int, float): (ordinal, offset, size) from the reference page.
  CHECK(kern.params == std::vector<ParamInfo>{{0, 24}, {24, 8}, {32, 4}, {36, 4}});
  CHECK(kern.param_bytes == 40);
}

TEST_CASE("a parameter block over 4352 bytes is read from the 0x45 records", "[fatbin][cubin]") {
  const std::vector<KernelInfo> kernels = cubin_kernels(committed("kernels_sm90.cubin"));
  const KernelInfo& big = find_kernel(kernels, "_Z10big_params3BigPi");
  CHECK(big.params == std::vector<ParamInfo>{{0, 5000}, {5000, 8}});
  CHECK(big.param_bytes == 5008);
  CHECK(find_kernel(kernels, "_Z11mixed_large3BigifdPiPKf5Smallc") == expected_kernels_cu()[1]);
}

TEST_CASE("on sm_100 and later the flag byte of a 0x45 record is not part of the size",
          "[fatbin][cubin]") {
  // ptxas 13.0 sets the top byte of the size word to 0x05 for pointer parameters on sm_100+.
  const Bytes fatbin = committed("kernels_multi_arch.fatbin");
  Result<std::vector<Entry>> entries = list_entries(fatbin);
  REQUIRE(entries);
  int checked = 0;
  for (const Entry& entry : entries.value()) {
    if (entry.kind != EntryKind::kCubin || entry.arch < 100) continue;
    INFO("sm_" << entry.arch);
    Result<std::vector<std::byte>> bytes = payload(entry);
    REQUIRE(bytes);
    CHECK(cubin_kernels(bytes.value()) == expected_kernels_cu());
    ++checked;
  }
  CHECK(checked == 2);  // sm_100f and sm_120
}

TEST_CASE("a kernel without parameters has none and a zero-byte block", "[fatbin][cubin]") {
  const std::vector<KernelInfo> kernels = cubin_kernels(committed("kernels_sm90.cubin"));
  const KernelInfo& none = find_kernel(kernels, "_Z9no_paramsv");
  CHECK(none.params.empty());
  CHECK(none.param_bytes == 0);
}

TEST_CASE("both instantiations of a template kernel are listed under their mangled names",
          "[fatbin][cubin]") {
  const std::vector<KernelInfo> kernels = cubin_kernels(committed("kernels_sm90.cubin"));
  CHECK(find_kernel(kernels, "_Z8scale_byIfEvPT_S0_i").params ==
        std::vector<ParamInfo>{{0, 8}, {8, 4}, {12, 4}});
  CHECK(find_kernel(kernels, "_Z8scale_byIdEvPT_S0_i").params ==
        std::vector<ParamInfo>{{0, 8}, {8, 8}, {16, 4}});
  CHECK(kernels == expected_kernels_cu());
}

TEST_CASE("PTX-derived layouts equal cubin-derived layouts for every kernel", "[fatbin][ptx]") {
  SECTION("the committed sm_90 cubin and PTX") {
    const Bytes ptx = committed("kernels_sm90.ptx");
    CHECK(ptx_kernels(testing::as_text(ptx)) == cubin_kernels(committed("kernels_sm90.cubin")));
    CHECK(ptx_kernels(testing::as_text(ptx)) == expected_kernels_cu());
  }
  SECTION("every cubin (sm_80 to sm_120) and PTX of the committed multi-arch fatbin") {
    check_ptx_matches_cubins(committed("kernels_multi_arch.fatbin"));
  }
}

TEST_CASE("PTX-derived layouts equal cubin-derived layouts in the fatbins this machine's nvcc builds",
          "[fatbin][ptx][nvcc]") {
  if (!testing::have_nvcc()) SKIP_CASE("nvcc was not found at configure time: no freshly built fatbin");
  check_ptx_matches_cubins(*testing::generated("kernels_multi_arch.fatbin"));
  for (const char* name : {"globals_sm90.fatbin", "constants_sm90.fatbin"}) {
    INFO(name);
    check_ptx_matches_cubins(*testing::generated(name));
  }
}

TEST_CASE("PTX param_bytes is the end of the last parameter, as CBANK_PARAM_SIZE is",
          "[fatbin][ptx]") {
  // kern ends with a 4-byte float at 36: 40, not rounded up to 8; scale_by<double> ends at 20.
  const std::vector<KernelInfo> kernels =
      ptx_kernels(testing::as_text(committed("kernels_sm90.ptx")));
  CHECK(find_kernel(kernels, "_Z4kern1SPfif").param_bytes == 40);
  CHECK(find_kernel(kernels, "_Z8scale_byIdEvPT_S0_i").param_bytes == 20);
  CHECK(find_kernel(kernels, "_Z11mixed_large3BigifdPiPKf5Smallc").param_bytes == 5041);
}

TEST_CASE("PTX parameters are laid out by their own alignment, not a pointee's", "[fatbin][ptx]") {
  const std::string_view ptx = R"(
// .entry commented_out(.param .u32 x)
.version 9.0
.target sm_90a
.address_size 64
/* .entry also_commented_out() { } */
.extern .func (.param .b32 retval) helper(.param .b32 x);
.visible .entry declared_only(.param .u32 x);
.visible .func (.param .b32 out) device_function(.param .b64 a, .param .b8 b[3])
{
  ret;
}
.visible .entry pointers(
	.param .u8 flag,
	.param .u32 .ptr .global .align 16 data,
	.param .u64 .ptr .align 8 other,
	.param .align 8 .b8 blob[24],
	.param .b16 half_word,
	.param .texref texture,
	.param .f32 grid[2][3]
)
.maxntid 256, 1, 1
{
	{ .reg .b32 nested; }
	ret;
}
.entry empty()
{
}
)";
  const std::vector<KernelInfo> kernels = ptx_kernels(ptx);
  REQUIRE(kernels.size() == 2);
  CHECK(kernels[0] == KernelInfo{"empty", {}, 0});
  CHECK(kernels[1] ==
        KernelInfo{"pointers", {{0, 1}, {4, 4}, {8, 8}, {16, 24}, {40, 2}, {48, 8}, {56, 24}}, 80});

  Result<ModuleInfo> module = parse_module(testing::as_bytes(ptx), 90);
  REQUIRE(module);
  CHECK(module.value().chosen_kind == EntryKind::kPtx);
  CHECK(module.value().chosen_arch == 90);  // from `.target sm_90a`
  CHECK_FALSE(module.value().has_writable_globals);
}

TEST_CASE("malformed PTX parameter lists are kMalformedPtx", "[fatbin][ptx]") {
  for (std::string_view ptx : {
           ".entry (.param .u32 x) {}",                // no name
           ".entry k(.param x) {}",                    // no type
           ".entry k(.param .u32) {}",                 // no name
           ".entry k(.param .u32 x[0]) {}",            // empty array
           ".entry k(.param .u32 x[99999999999]) {}",  // too large
           ".entry k(.param .align 3 .u32 x) {}",      // alignment not a power of two
           ".entry k(.param .u32 x .param .u32 y) {}",
           ".entry k(.param .v4 .u32 x) {}",  // vectors are not kernel parameters
           ".entry k(.param .u32 x)",         // no body
           ".entry k() { ",                   // body never closed
           "}",
       }) {
    INFO(ptx);
    CHECK(testing::error_code(kernels_from_ptx(ptx)) == FatbinErrc::kMalformedPtx);
  }
}

TEST_CASE("a module with __device__ or __constant__ variables has writable globals",
          "[fatbin][globals]") {
  for (const char* name : {"globals_sm90.fatbin", "constants_sm90.fatbin"}) {
    INFO(name);
    const Bytes fatbin = committed(name);
    Result<ModuleInfo> from_cubin = parse_module(fatbin, 90);
    REQUIRE(from_cubin);
    CHECK(from_cubin.value().chosen_kind == EntryKind::kCubin);
    CHECK(from_cubin.value().has_writable_globals);
    Result<ModuleInfo> from_ptx = parse_module(fatbin, 100);  // no sm_100 cubin: PTX JIT
    REQUIRE(from_ptx);
    CHECK(from_ptx.value().chosen_kind == EntryKind::kPtx);
    CHECK(from_ptx.value().has_writable_globals);
  }
  Result<ModuleInfo> globals = parse_module(committed("globals_sm90.fatbin"), 90);
  REQUIRE(globals);
  CHECK(globals.value().kernels == std::vector<KernelInfo>{{"_Z8count_upPi", {{0, 8}}, 8}});
}

TEST_CASE("a module without device variables has no writable globals", "[fatbin][globals]") {
  for (const char* name : {"kernels_sm90_zstd.fatbin", "kernels_compute90_ptx.fatbin"}) {
    INFO(name);
    Result<ModuleInfo> module = parse_module(committed(name), 90);
    REQUIRE(module);
    CHECK_FALSE(module.value().has_writable_globals);
  }
}

TEST_CASE("shared and local memory variables are not writable globals", "[fatbin][globals]") {
  const SyntheticKernel kernel{
      "k", join({param_record(kParamInfo, 0, 0, kparam_word(8)), inline_record(3, kBankSize, 8)})};
  auto writable = [&](const std::vector<SyntheticVariable>& variables) {
    Result<ModuleInfo> module = parse_module(make_cubin({kernel}, variables), 90);
    REQUIRE(module);
    return module.value().has_writable_globals;
  };
  CHECK_FALSE(writable({}));
  CHECK_FALSE(writable({{"tile", ".nv.shared.k", 1024}}));
  CHECK_FALSE(writable({{"scratch", ".nv.local.k", 64}}));
  CHECK(writable({{"counter", ".nv.global", 4}}));
  CHECK(writable({{"table", ".nv.global.init", 64, 0x3, false}}));
  CHECK(writable({{"coefficients", ".nv.constant3", 16, 0x2, false}}));
  CHECK(writable({{"state", ".data.other", 16, 0x3, false}}));
}

TEST_CASE("device functions beside the kernels are not kernels", "[fatbin][cubin]") {
  const Bytes cubin = make_cubin({
      {"kernel",
       join({param_record(kParamInfo, 0, 0, kparam_word(4)), inline_record(3, kBankSize, 4)})},
      {"helper", {}, /*is_entry=*/false},
  });
  CHECK(cubin_kernels(cubin) == std::vector<KernelInfo>{{"kernel", {{0, 4}}, 4}});
}

TEST_CASE("parameter records in any order are sorted by ordinal", "[fatbin][cubin]") {
  const Bytes cubin = make_cubin({{"k", join({
                                            param_record(kParamInfo, 1, 8, kparam_word(4)),
                                            inline_record(3, kBankSize, 12),
                                            param_record(kParamInfo, 0, 0, kparam_word(8)),
                                        })}});
  CHECK(cubin_kernels(cubin) == std::vector<KernelInfo>{{"k", {{0, 8}, {8, 4}}, 12}});
}

TEST_CASE("without CBANK_PARAM_SIZE the block ends with its last parameter", "[fatbin][cubin]") {
  const Bytes cubin = make_cubin({{"k", param_record(kLargeParamInfo, 0, 0, 6000)}});
  CHECK(cubin_kernels(cubin) == std::vector<KernelInfo>{{"k", {{0, 6000}}, 6000}});
}

TEST_CASE("malformed .nv.info records are kBadParamInfo", "[fatbin][cubin]") {
  struct Case {
    const char* what;
    SyntheticKernel kernel;
  };
  const std::vector<Case> cases = {
      {"a repeated ordinal",
       {"k", join({param_record(kParamInfo, 0, 0, kparam_word(4)),
                   param_record(kParamInfo, 0, 4, kparam_word(4))})}},
      {"a missing ordinal",
       {"k", join({param_record(kParamInfo, 0, 0, kparam_word(4)),
                   param_record(kParamInfo, 2, 8, kparam_word(4))})}},
      {"parameters past CBANK_PARAM_SIZE",
       {"k",
        join({param_record(kParamInfo, 0, 0, kparam_word(8)), inline_record(3, kBankSize, 4)})}},
      {"a record payload past the section", {"k", inline_record(4, kParamInfo, 200)}},
      {"a short parameter record", {"k", testing::sized_record(kParamInfo, Bytes(8))}},
      {"a cut-off record header", {"k", Bytes(3, std::byte{3})}},
      {"an unknown record format", {"k", inline_record(7, 0x30, 0)}},
      {"no .nv.info section", {"k", {}, true, false}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK(testing::error_code(kernels_from_cubin(make_cubin({c.kernel}))) ==
          FatbinErrc::kBadParamInfo);
  }
}

TEST_CASE("a cubin whose ELF structure lies is kMalformedElf", "[fatbin][cubin]") {
  const Bytes cubin = committed("kernels_sm90.cubin");
  auto error_of = [](const Bytes& bytes) { return testing::error_code(kernels_from_cubin(bytes)); };
  SECTION("cut anywhere before the end of the section table") {
    std::uint64_t table = 0;
    std::memcpy(&table, cubin.data() + 0x28, sizeof table);
    REQUIRE(table + 64 < cubin.size());
    for (std::size_t keep : {std::size_t{4}, std::size_t{63}, std::size_t{64}, cubin.size() / 2,
                             static_cast<std::size_t>(table) + 64}) {
      INFO("keeping " << keep);
      CHECK(error_of(Bytes(cubin.begin(), cubin.begin() + static_cast<std::ptrdiff_t>(keep))) ==
            FatbinErrc::kMalformedElf);
    }
  }
  SECTION("a 32-bit ELF") {
    Bytes changed = cubin;
    changed[4] = std::byte{1};
    CHECK(error_of(changed) == FatbinErrc::kMalformedElf);
  }
  SECTION("a section table offset past the end") {
    Bytes changed = cubin;
    testing::store(changed, 0x28, ~std::uint64_t{0} - 8);
    CHECK(error_of(changed) == FatbinErrc::kMalformedElf);
  }
  SECTION("a section-name table index past the table") {
    Bytes changed = cubin;
    testing::store(changed, 0x3e, std::uint16_t{0xfff0});
    CHECK(error_of(changed) == FatbinErrc::kMalformedElf);
  }
}

}  // namespace
}  // namespace gpubroker::fatbin
