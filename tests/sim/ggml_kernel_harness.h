// A device for the ggml kernel tests: host buffers that a launch may touch, and launches of the
// plugin's implementations (sim/ggml/kernels.h) as the sim makes them, with the parameter block
// packed by the kernel's signature at natural alignment (as nvcc lays a parameter list out) and
// the block's layout beside it.
//
// Kernels are found by their C++ name as the demangler writes it, without the return type and
// the parameter list, and with ggml's file-local namespaces (_INTERNAL_<hash>_..._cu_<hash>::)
// dropped: "rms_norm_f32<256, true, false>", "k_bin_bcast<&op_add, float, float, float, float const*>".
//
// One thread: the registry of buffers is the process's.
#pragma once

#include <cxxabi.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "gpubroker/sim/float16.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "sim/ggml/kernels.h"

namespace ggml_harness {

using gpubroker::sim::ggml::Half;
using gpubroker::sim::ggml::Uint3;

inline Half half(float value) { return Half{gpubroker::sim::float_to_half(value)}; }
inline float widen(Half value) { return gpubroker::sim::half_to_float(value.bits); }
inline float widen(float value) { return value; }

// ggml's fast-division constants for `divisor`; the implementations read only the divisor (z),
// but the constants are the ones ggml's host code passes (init_fastdiv_values).
inline Uint3 fastdiv(std::uint32_t divisor) {
  std::uint32_t shift = 0;
  while (shift < 32 && (std::uint64_t{1} << shift) < divisor) ++shift;
  const auto multiplier =
      static_cast<std::uint32_t>((std::uint64_t{1} << 32) * ((std::uint64_t{1} << shift) - divisor) / divisor + 1);
  return {multiplier, shift, divisor};
}

// The buffers a launch may touch (GpubrokerSimLaunch::memory_accessible), by address.
inline std::map<std::uintptr_t, std::size_t>& accessible_ranges() {
  static std::map<std::uintptr_t, std::size_t> ranges;
  return ranges;
}

inline int memory_accessible(const void* address, std::uint64_t bytes, int) {
  const auto begin = reinterpret_cast<std::uintptr_t>(address);
  auto after = accessible_ranges().upper_bound(begin);
  if (after == accessible_ranges().begin()) return 0;
  const auto& [base, size] = *std::prev(after);
  return begin >= base && begin + bytes <= base + size ? 1 : 0;
}

// "Device" memory of one test: T elements, registered while the Buffer lives.
template <class T>
class Buffer {
 public:
  explicit Buffer(std::vector<T> values) : values_(std::move(values)) {
    if (values_.empty()) values_.resize(1);
    accessible_ranges()[address()] = values_.size() * sizeof(T);
  }
  explicit Buffer(std::size_t count, T value = T{}) : Buffer(std::vector<T>(count, value)) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { accessible_ranges().erase(address()); }

  T* data() { return values_.data(); }
  T& operator[](std::size_t i) { return values_[i]; }
  const T& operator[](std::size_t i) const { return values_[i]; }
  [[nodiscard]] std::size_t size() const { return values_.size(); }

 private:
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(values_.data()); }
  std::vector<T> values_;
};

// Values spread over [-1, 1), the same for the same seed.
inline std::vector<float> values(std::size_t count, unsigned seed) {
  std::vector<float> out(count);
  std::uint64_t state = 0x9e3779b97f4a7c15ull * (seed + 1);
  for (float& value : out) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    value = static_cast<float>(static_cast<double>(state >> 11) / static_cast<double>(1ull << 53) * 2.0 - 1.0);
  }
  return out;
}

inline std::vector<Half> halves(const std::vector<float>& floats) {
  std::vector<Half> out;
  for (float value : floats) out.push_back(half(value));
  return out;
}

// The name the tests use for a mangled name (see the top of this file).
inline std::string readable_name(const std::string& mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> text(abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status),
                                                   &std::free);
  std::string name = status == 0 ? text.get() : mangled;
  if (name.rfind("void ", 0) == 0) name.erase(0, 5);
  int depth = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    depth += name[i] == '<' ? 1 : name[i] == '>' ? -1 : 0;
    if (name[i] == '(' && depth == 0) {
      name.resize(i);
      break;
    }
  }
  return std::regex_replace(name, std::regex("_INTERNAL_[0-9a-f]+_[0-9]+_[A-Za-z0-9_]+_cu_[0-9a-f]+::"), "");
}

inline const gpubroker::sim::ggml::KernelEntry& kernel(const std::string& name) {
  static const std::vector<gpubroker::sim::ggml::KernelEntry> all = gpubroker::sim::ggml::kernels();
  for (const auto& entry : all)
    if (readable_name(entry.mangled_name) == name) return entry;
  FAIL("no registered kernel is named " << name);
  std::abort();
}

// A launch of `name` over grid x block with these parameters, in the order and types of the
// kernel's signature; the implementation's result (0, or the CUresult it fails with).
template <class... Ts>
int launch(const std::string& name, GpubrokerSimDim3 grid, GpubrokerSimDim3 block, const Ts&... arguments) {
  const auto& entry = kernel(name);
  std::vector<unsigned char> block_bytes;
  std::vector<GpubrokerSimParam> layout;
  const auto append = [&](const auto& value) {
    const std::size_t align = alignof(std::remove_cvref_t<decltype(value)>);
    block_bytes.resize((block_bytes.size() + align - 1) / align * align);
    layout.push_back({static_cast<std::uint32_t>(block_bytes.size()), static_cast<std::uint32_t>(sizeof(value))});
    const auto* bytes = reinterpret_cast<const unsigned char*>(&value);
    block_bytes.insert(block_bytes.end(), bytes, bytes + sizeof(value));
  };
  (append(arguments), ...);
  GpubrokerSimLaunch launch{};
  launch.struct_size = sizeof(GpubrokerSimLaunch);
  launch.kernel_name = entry.mangled_name.c_str();
  launch.grid = grid;
  launch.block = block;
  launch.params = block_bytes.data();
  launch.param_bytes = static_cast<std::uint32_t>(block_bytes.size());
  launch.param_layout = layout.data();
  launch.param_count = static_cast<std::uint32_t>(layout.size());
  launch.memory_accessible = memory_accessible;
  return entry.run(&launch);
}

constexpr int kIllegalAddress = 700;
constexpr int kLaunchFailed = 719;

}  // namespace ggml_harness
