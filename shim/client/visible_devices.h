// CUDA_VISIBLE_DEVICES, applied the way the CUDA driver applies it, in one place for every shim
// (runtime, driver, NVML), so that all of them number and name the devices alike.
//
// The variable is a comma-separated list of device indices ("1,0") or UUIDs ("GPU-8f6d...", any
// unique prefix). The list ends at the first entry that names no device, names one twice, or is
// ambiguous; devices it does not list are invisible. Unset: every device, in order.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "gpubroker/wire/segments.h"

namespace gpubroker::shim {

// The broker ordinals of the visible devices, in the order the process numbers them.
std::vector<std::uint32_t> visible_devices(const wire::DeviceTable& table, std::optional<std::string_view> variable);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" for a device's UUID bytes, as nvidia-smi, NVML and
// Ollama print it.
std::string uuid_string(const std::uint8_t (&uuid)[16]);

}  // namespace gpubroker::shim
