#include "test_inputs.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fatbin_test_paths.h"

namespace gpubroker::fatbin {

std::ostream& operator<<(std::ostream& out, FatbinErrc code) {
  return out << to_string(code) << " (" << static_cast<int>(code) << ")";
}

std::ostream& operator<<(std::ostream& out, const KernelInfo& kernel) {
  out << kernel.name << " [" << kernel.param_bytes << " bytes:";
  for (const ParamInfo& param : kernel.params)
    out << " (" << param.offset << "," << param.size << ")";
  return out << "]";
}

}  // namespace gpubroker::fatbin

namespace gpubroker::fatbin::testing {
namespace {

std::optional<Bytes> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes bytes(chars.size());
  std::transform(chars.begin(), chars.end(), bytes.begin(),
                 [](char c) { return static_cast<std::byte>(c); });
  return bytes;
}

}  // namespace

Bytes committed(std::string_view name) {
  const std::filesystem::path path = std::filesystem::path(FATBIN_TEST_DATA_DIR) / name;
  std::optional<Bytes> bytes = read_file(path);
  INFO("committed test file " << path);
  REQUIRE(bytes.has_value());
  return *bytes;
}

bool have_nvcc() { return FATBIN_HAVE_NVCC != 0; }

std::optional<Bytes> generated(std::string_view name) {
  if (!have_nvcc()) return std::nullopt;
  const std::filesystem::path path = std::filesystem::path(FATBIN_GENERATED_DIR) / name;
  std::optional<Bytes> bytes = read_file(path);
  INFO("file nvcc generated at build time: " << path);
  REQUIRE(bytes.has_value());
  return bytes;
}

std::vector<std::string> committed_image_names() {
  std::vector<std::string> names;
  for (const auto& file : std::filesystem::directory_iterator(FATBIN_TEST_DATA_DIR)) {
    const std::string extension = file.path().extension().string();
    if (extension == ".fatbin" || extension == ".cubin" || extension == ".ptx") {
      names.push_back(file.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

const std::vector<KernelInfo>& expected_kernels_cu() {
  static const std::vector<KernelInfo> kernels = {
      {"_Z10big_params3BigPi", {{0, 5000}, {5000, 8}}, 5008},
      {"_Z11mixed_large3BigifdPiPKf5Smallc",
       {{0, 5000}, {5000, 4}, {5004, 4}, {5008, 8}, {5016, 8}, {5024, 8}, {5032, 8}, {5040, 1}},
       5041},
      {"_Z4kern1SPfif", {{0, 24}, {24, 8}, {32, 4}, {36, 4}}, 40},
      {"_Z8scale_byIdEvPT_S0_i", {{0, 8}, {8, 8}, {16, 4}}, 20},
      {"_Z8scale_byIfEvPT_S0_i", {{0, 8}, {8, 4}, {12, 4}}, 16},
      {"_Z9no_paramsv", {}, 0},
  };
  return kernels;
}

std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::span<const std::byte> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

}  // namespace gpubroker::fatbin::testing
