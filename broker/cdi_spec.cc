#include "broker/cdi_spec.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <regex>

#include "launch/shim_libraries.h"
#include "monitor/stats_reader.h"

namespace gpubroker::broker {

namespace fs = std::filesystem;

namespace {

// A YAML double-quoted scalar: quotes and backslashes escaped, control characters as \xNN.
std::string yaml_quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string env_list(const std::vector<std::string>& variables, std::string_view indent) {
  std::string out = fmt::format("{}env:\n", indent);
  for (const std::string& variable : variables) out += fmt::format("{}  - {}\n", indent, yaml_quoted(variable));
  return out;
}

std::string bind_mount(const std::string& path, const char* options, std::string_view indent) {
  return fmt::format("{0}- hostPath: {1}\n{0}  containerPath: {1}\n{0}  type: \"bind\"\n{0}  options: [{2}]\n", indent,
                     yaml_quoted(path), options);
}

std::string device(const std::string& name, const std::string& visible_devices) {
  return fmt::format("  - name: {}\n    containerEdits:\n{}", yaml_quoted(name),
                     env_list({"CUDA_VISIBLE_DEVICES=" + visible_devices}, "      "));
}

}  // namespace

std::string cdi_input_problem(const CdiSpecInput& input) {
  const fs::path socket(input.socket_path);
  if (!socket.is_absolute()) return fmt::format("the socket path {} is not absolute", input.socket_path);
  if (!input.shim_directory.is_absolute()) return fmt::format("the shim directory {} is not absolute", input.shim_directory.string());
  const fs::path directory = socket.parent_path();
  static const std::regex user_runtime_directory(R"(/run/user/[0-9]+/?)");
  const char* xdg_runtime = std::getenv("XDG_RUNTIME_DIR");
  if (std::distance(directory.begin(), directory.end()) < 3 || std::regex_match(directory.string(), user_runtime_directory) ||
      (xdg_runtime != nullptr && fs::path(xdg_runtime).lexically_normal() == directory.lexically_normal())) {
    return fmt::format("the socket's directory {} would be mounted into every container: give the broker a directory of "
                       "its own (e.g. --socket=/run/gpu-broker/broker.sock, or $XDG_RUNTIME_DIR/gpu-broker/broker.sock)",
                       directory.string());
  }
  for (const fs::path& library : input.shim_libraries) {
    if (library.string().find_first_of(": \t\n") != std::string::npos) {
      return fmt::format("the shim library path {} holds a character LD_PRELOAD reads as a separator", library.string());
    }
  }
  return "";
}

std::string cdi_spec_yaml(const CdiSpecInput& input) {
  std::string preload;
  for (const fs::path& library : input.shim_libraries) preload += (preload.empty() ? "" : ":") + library.string();
  std::string all;
  for (std::size_t i = 0; i < input.device_uuids.size(); ++i) all += (i == 0 ? "" : ",") + std::to_string(i);

  std::string out = fmt::format(
      "# gpubroker's devices for containers, as a Container Device Interface (CDI) specification: a\n"
      "# container given one (podman run --device {}=all) reaches the broker through its socket\n"
      "# and the shims, with no NVIDIA device node inside.\n",
      kCdiKind);
  std::size_t start = 0;
  while (start < input.origin.size()) {
    const std::size_t end = std::min(input.origin.find('\n', start), input.origin.size());
    out += fmt::format("# {}\n", std::string_view(input.origin).substr(start, end - start));
    start = end + 1;
  }
  out += fmt::format("cdiVersion: {}\nkind: {}\n", yaml_quoted(kCdiVersion), yaml_quoted(kCdiKind));
  // Whatever device is asked for: the broker's socket directory, the shims, and the environment
  // that puts them in front of the container's own CUDA libraries (as gpu-broker-run does).
  out += "containerEdits:\n";
  out += env_list({"GPUBROKER_SOCKET=" + input.socket_path, "LD_PRELOAD=" + preload,
                   "LD_LIBRARY_PATH=" + input.shim_directory.string()},
                  "  ");
  out += "  mounts:\n";
  out += bind_mount(fs::path(input.socket_path).parent_path().string(), R"("bind", "ro", "nosuid", "nodev", "noexec")", "    ");
  out += bind_mount(input.shim_directory.string(), R"("bind", "ro", "nosuid", "nodev")", "    ");
  out += "devices:\n";
  out += device("all", all);
  for (std::size_t i = 0; i < input.device_uuids.size(); ++i) out += device(std::to_string(i), std::to_string(i));
  for (const std::string& uuid : input.device_uuids) out += device(uuid, uuid);
  return out;
}

int print_cdi_spec(const BrokerOptions& options, const std::string& shim_directory, const char* version) {
  std::error_code ignored;
  CdiSpecInput input;
  input.socket_path = fs::absolute(options.socket_path, ignored).lexically_normal().string();
  input.shim_directory =
      shim_directory.empty() ? launch::installed_shim_directory() : fs::absolute(shim_directory, ignored).lexically_normal();
  launch::ShimLibraries shims;
  shims.collect(input.shim_directory);
  if (shims.empty()) {
    fmt::print(stderr, "gpu-broker cdi-spec: no shim libraries (lib*.so.N) in {}; name their directory with --shim-dir=DIR\n",
               input.shim_directory.string());
    return 1;
  }
  // The canonical directory: the one the shims were found in, as the mounts and LD_PRELOAD name it.
  input.shim_directory = shims.paths().front().parent_path();
  input.shim_libraries = shims.paths();

  // As the broker opens it, but without the sim's discovery record: that file is the serving
  // broker's to write.
  auto layer = DeviceLayer::open(options.driver, options.sim_library,
                                 SimSettings{options.sim_devices, options.sim_kernels, /*discover=*/""});
  if (!layer) {
    fmt::print(stderr, "gpu-broker cdi-spec: no usable driver: {}\n", layer.error().detail);
    return 1;
  }
  const wire::DeviceTable& devices = layer.value()->devices();
  for (std::uint32_t i = 0; i < devices.count; ++i) {
    std::array<std::uint8_t, 16> uuid{};
    std::copy(std::begin(devices.devices[i].uuid), std::end(devices.devices[i].uuid), uuid.begin());
    input.device_uuids.push_back(monitor::uuid_text(uuid));
  }
  input.origin = fmt::format("Written by `gpu-broker cdi-spec` (gpubroker {}) for the broker at {}\n"
                             "with {} device(s) on the {} driver: write it again when the devices or its options change.",
                             version, input.socket_path, devices.count, to_string(layer.value()->kind()));
  if (const std::string problem = cdi_input_problem(input); !problem.empty()) {
    fmt::print(stderr, "gpu-broker cdi-spec: {}\n", problem);
    return 1;
  }
  fmt::print("{}", cdi_spec_yaml(input));
  return 0;
}

}  // namespace gpubroker::broker
