// What the sim's devices report about themselves: an H100 SXM5 80GB (compute capability 9.0).
//
// Every figure is NVIDIA's published H100 SXM5 value or what the driver reports on that part;
// attributes that do not apply to a discrete Linux GPU are 0. Pure data: no state, any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::sim {

inline constexpr char kDeviceName[] = "NVIDIA H100 80GB HBM3";
inline constexpr std::uint32_t kDeviceArch = 90;  // sm_90
inline constexpr std::size_t kDefaultMemoryBytes = std::size_t{80} << 30;
inline constexpr int kMaxDevices = 32;
inline constexpr std::size_t kVmmGranularity = std::size_t{2} << 20;

// H100 limits the occupancy calculator and the launch checks use.
inline constexpr int kMultiprocessors = 132;
inline constexpr int kMaxThreadsPerBlock = 1024;
inline constexpr int kMaxThreadsPerMultiprocessor = 2048;
inline constexpr int kMaxBlocksPerMultiprocessor = 32;
inline constexpr int kRegistersPerMultiprocessor = 65536;
inline constexpr int kSharedPerBlock = 48 * 1024;
inline constexpr int kSharedPerBlockOptin = 232448;            // 227 KiB
inline constexpr int kSharedPerMultiprocessor = 233472;        // 228 KiB
inline constexpr int kReservedSharedPerBlock = 1024;
inline constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
inline constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535u, 65535u};

// One past the last attribute value in CUDA 13.0's cuda.h (CU_DEVICE_ATTRIBUTE_MAX there).
inline constexpr cuda::CUdevice_attribute kAttributeEnd = 148;

// The value of `attribute` for device `ordinal`, or nullopt outside 1..kAttributeEnd-1.
[[nodiscard]] std::optional<int> device_attribute(cuda::CUdevice_attribute attribute, int ordinal);

// PCI location: domain 0, a distinct bus per ordinal, device 0, function 0.
[[nodiscard]] int pci_bus(int ordinal);
[[nodiscard]] std::string pci_bus_id(int ordinal);  // "0000:18:00.0"

// A version-4-looking UUID derived from a fixed seed and the ordinal: the same on every run.
[[nodiscard]] cuda::CUuuid device_uuid(int ordinal);

}  // namespace gpubroker::sim
