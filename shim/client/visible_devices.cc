#include "shim/client/visible_devices.h"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <string>

namespace gpubroker::shim {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The device an entry names, if exactly one.
std::optional<std::uint32_t> device_named(const wire::DeviceTable& table, std::string_view entry) {
  if (!entry.empty() && std::all_of(entry.begin(), entry.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (entry.size() > 3) return std::nullopt;
    const std::uint32_t index = static_cast<std::uint32_t>(std::stoul(std::string(entry)));
    return index < table.count ? std::optional(index) : std::nullopt;
  }
  if (entry.size() <= 4 || entry.substr(0, 4) != "GPU-") return std::nullopt;
  std::optional<std::uint32_t> match;
  for (std::uint32_t i = 0; i < table.count; ++i) {
    if (uuid_string(table.devices[i].uuid).rfind(entry, 0) == 0) {
      if (match) return std::nullopt;  // ambiguous prefix
      match = i;
    }
  }
  return match;
}

}  // namespace

std::string uuid_string(const std::uint8_t (&u)[16]) {
  return fmt::format("GPU-{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

std::vector<std::uint32_t> visible_devices(const wire::DeviceTable& table, std::optional<std::string_view> variable) {
  std::vector<std::uint32_t> visible;
  const std::uint32_t count = std::min(table.count, wire::kMaxDevices);
  if (!variable) {
    for (std::uint32_t i = 0; i < count; ++i) visible.push_back(i);
    return visible;
  }
  std::string_view rest = *variable;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view entry = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto device = device_named(table, entry);
    if (!device || std::find(visible.begin(), visible.end(), *device) != visible.end()) break;
    visible.push_back(*device);
  }
  return visible;
}

}  // namespace gpubroker::shim
