// The frame the plugin's ggml kernels are written in: the device's value types as nvcc lays them
// out, a launch's parameters read by the kernel's C++ signature, the memory a kernel may touch,
// and the one way a kernel fails.
//
// Every implementation follows the same steps: read the parameters (a layout that is not the
// signature's fails the launch), refuse what it does not implement (a template instance or a
// parameter combination, by name), check each range it reads or writes against the sim's memory
// (a range outside it fails with CUDA_ERROR_ILLEGAL_ADDRESS, as a GPU faults), then compute over
// the threads the grid and block launch, as the device code does.
//
// Threads: an implementation runs on its stream's worker thread (or the launching thread), and
// implementations of different streams run at once; nothing here holds state between launches.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "gpubroker/sim/float16.h"
#include "gpubroker/sim/kernel_plugin.h"

namespace gpubroker::sim::ggml {

inline constexpr int kIllegalAddress = 700;  // CUDA_ERROR_ILLEGAL_ADDRESS
inline constexpr int kLaunchFailed = 719;    // CUDA_ERROR_LAUNCH_FAILED
inline constexpr unsigned kWarpSize = 32;

// CUDA's uint3: ggml passes its fast-division constants <multiplier, shift, divisor> in one; the
// host implementations divide by the divisor (z) itself.
struct Uint3 {
  std::uint32_t x;
  std::uint32_t y;
  std::uint32_t z;
};
static_assert(sizeof(Uint3) == 12 && alignof(Uint3) == 4);

// Whether every fast-division constant has a divisor the kernel can divide by.
inline bool divisors_valid(std::initializer_list<Uint3> values) {
  for (const Uint3& value : values)
    if (value.z == 0) return false;
  return true;
}

// CUDA's __half, by its bits.
struct Half {
  std::uint16_t bits;
};
static_assert(sizeof(Half) == 2);

// ggml_cuda_cast between the element types the kernels use: float, and __half (rounded to nearest
// even, as __float2half does).
template <class To, class From>
To cast(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (std::is_same_v<From, Half>) {
    return static_cast<To>(half_to_float(value.bits));
  } else if constexpr (std::is_same_v<To, Half>) {
    return Half{float_to_half(static_cast<float>(value))};
  } else {
    return static_cast<To>(value);
  }
}

// One axis of a strided access: `count` indices 0..count-1, `stride` elements apart.
struct Axis {
  std::int64_t count;
  std::int64_t stride;
};

enum class Access { kRead, kWrite };

class Launch {
 public:
  explicit Launch(const GpubrokerSimLaunch* launch) : launch_(launch) {}

  [[nodiscard]] const GpubrokerSimDim3& grid() const { return launch_->grid; }
  [[nodiscard]] const GpubrokerSimDim3& block() const { return launch_->block; }
  [[nodiscard]] std::uint64_t block_threads() const {
    return std::uint64_t{launch_->block.x} * launch_->block.y * launch_->block.z;
  }
  [[nodiscard]] std::uint64_t grid_blocks() const {
    return std::uint64_t{launch_->grid.x} * launch_->grid.y * launch_->grid.z;
  }

  // The parameters as the signature's types Ts, when the launch's layout is exactly that signature
  // (as many parameters, each of its type's size, inside the block); nullopt after saying so.
  template <class... Ts>
  [[nodiscard]] std::optional<std::tuple<Ts...>> parameters() const {
    static_assert((std::is_trivially_copyable_v<Ts> && ...));
    constexpr std::uint32_t sizes[] = {static_cast<std::uint32_t>(sizeof(Ts))...};
    if (!layout_is(sizes, sizeof...(Ts))) return std::nullopt;
    return read<Ts...>(std::index_sequence_for<Ts...>{});
  }

  // Whether the kernel may touch the elements at base + sum(i_k * stride_k) for every index of
  // every axis (an axis of count 0 or less: nothing); says which parameter when it may not. The
  // whole span from the lowest to the highest element must be one accessible range.
  [[nodiscard]] bool accessible(std::string_view parameter, const void* base, std::size_t element_bytes,
                                std::initializer_list<Axis> axes, Access access) const;

  // The launch fails: one line on stderr names the kernel and the case, and the result is the
  // error the stream then reports (sticky for the session, as a fault is for a CUDA context).
  [[nodiscard]] int unsupported(std::string_view why) const;
  [[nodiscard]] int illegal_address() const;

  // The kernel's name as C++ writes it, without its parameter list: "rms_norm_f32<256, true, false>".
  [[nodiscard]] std::string kernel_name() const;

 private:
  bool layout_is(const std::uint32_t* sizes, std::size_t count) const;

  template <class... Ts, std::size_t... I>
  std::tuple<Ts...> read(std::index_sequence<I...>) const {
    std::tuple<Ts...> values;
    (std::memcpy(&std::get<I>(values), launch_->params + launch_->param_layout[I].offset, sizeof(Ts)), ...);
    return values;
  }

  const GpubrokerSimLaunch* launch_;
  mutable std::string refused_;  // the parameter accessible() refused, for illegal_address()
};

// A host implementation as the plugin registers it: noexcept, so no exception crosses into the sim.
// `Body` is an int(const Launch&) function.
template <auto Body>
int entry(const GpubrokerSimLaunch* launch) noexcept {
  const Launch checked(launch);
  try {
    return Body(checked);
  } catch (...) {  // std::bad_alloc from a scratch buffer: the launch fails, as the sim's GEMMs do
    return checked.unsupported("ran out of host memory");
  }
}

// One kernel of the wheel: its mangled name, as the fatbin gives it, and its implementation.
struct KernelEntry {
  std::string mangled_name;
  GpubrokerSimKernel run;
};

}  // namespace gpubroker::sim::ggml
