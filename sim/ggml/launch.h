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

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "gpubroker/sim/float16.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "sim/ggml/device_types.h"

namespace gpubroker::sim::ggml {

inline constexpr int kIllegalAddress = 700;  // CUDA_ERROR_ILLEGAL_ADDRESS
inline constexpr int kLaunchFailed = 719;    // CUDA_ERROR_LAUNCH_FAILED
inline constexpr unsigned kWarpSize = 32;

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

  // The parameters as Sig's types (a Signature), when the launch's layout is exactly that
  // signature (as many parameters, each of its type's size, inside the block); nullopt after
  // saying so.
  template <class Sig>
  [[nodiscard]] std::optional<typename Sig::Values> parameters() const {
    if (!layout_is(Sig::kSizes.data(), Sig::kSizes.size())) return std::nullopt;
    typename Sig::Values values;
    std::size_t index = 0;
    std::apply(
        [&](auto&... value) {
          ((std::memcpy(&value, launch_->params + launch_->param_layout[index].offset, sizeof(value)), ++index), ...);
        },
        values);
    return values;
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

  const GpubrokerSimLaunch* launch_;
  mutable std::string refused_;  // the parameter accessible() refused, for illegal_address()
};

// A kernel's C++ parameter list, as types: what its launches' parameter blocks hold, by value.
template <class... Ts>
struct Signature {
  static_assert((std::is_trivially_copyable_v<Ts> && ...) && (std::is_default_constructible_v<Ts> && ...));
  using Values = std::tuple<Ts...>;
  static constexpr std::array<std::uint32_t, sizeof...(Ts)> kSizes{static_cast<std::uint32_t>(sizeof(Ts))...};
};

// A host implementation as the plugin registers it: the launch's parameters read by `Sig`, then
// `Body` (an int(const Launch&, const Sig::Values&) function) called with them. noexcept: no
// exception crosses into the sim.
template <class Sig, auto Body>
int entry(const GpubrokerSimLaunch* launch) noexcept {
  const Launch checked(launch);
  try {
    const std::optional<typename Sig::Values> values = checked.parameters<Sig>();
    if (!values) return kLaunchFailed;
    return Body(checked, *values);
  } catch (...) {  // std::bad_alloc from a scratch buffer: the launch fails, as the sim's GEMMs do
    return checked.unsupported("ran out of host memory");
  }
}

// One kernel of the wheel: its mangled name, as the fatbin gives it, its implementation, and the
// parameter sizes of the signature it reads (which the wheel's layout must match).
struct KernelEntry {
  std::string mangled_name;
  GpubrokerSimKernel run;
  std::span<const std::uint32_t> param_sizes;
};

template <class Sig, auto Body>
KernelEntry kernel(std::string mangled_name) {
  return {std::move(mangled_name), entry<Sig, Body>, Sig::kSizes};
}

}  // namespace gpubroker::sim::ggml
