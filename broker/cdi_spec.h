// gpu-broker cdi-spec: the Container Device Interface (CDI) specification that hands the broker's
// devices to containers. Podman, containerd, CRI-O and Docker read such specifications from
// /etc/cdi and /var/run/cdi (the package writes /etc/cdi/gpubroker.yaml when it is configured);
// `podman run --device gpubroker.io/gpu=all IMAGE` then gives the container what gpu-broker-run
// gives a process:
//
//   - the broker's socket directory and the shim directory, bind-mounted read-only at the same
//     paths (the directory rather than the socket file: a restarted broker binds a new socket in
//     it, which a running container then sees);
//   - GPUBROKER_SOCKET, LD_PRELOAD (every shim library by path) and LD_LIBRARY_PATH (the shim
//     directory) in its environment.
//
// No NVIDIA device node and no driver library enters the container. The devices are "all" and
// each broker device by its index ("0") and by its UUID ("GPU-..."); each sets
// CUDA_VISIBLE_DEVICES to itself (or to every index for "all"), which the shims apply as CUDA
// does. That selects devices; it does not confine a container: whoever reaches the socket may use
// every device of the broker (docs/packaging.md, "Containers").
//
// The device table comes from opening the device layer exactly as the broker does with the same
// options (--config, --driver, --sim-devices), so the specification names the devices a broker
// started with those options serves; it is written again when they change.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "broker/options.h"

namespace gpubroker::broker {

// The kind of gpubroker's CDI devices: vendor "gpubroker.io", class "gpu".
inline constexpr const char* kCdiKind = "gpubroker.io/gpu";

// The CDI version the specification declares: the lowest whose fields it uses (a device name that
// begins with a digit came with 0.5.0). Runtimes read every version up to their own, so current
// ones (CDI 1.1.0) and Debian 12's Podman 4.3 (CDI 0.5.0) all load it.
inline constexpr const char* kCdiVersion = "0.5.0";

struct CdiSpecInput {
  std::string socket_path;                              // the broker's socket, absolute
  std::filesystem::path shim_directory;                 // absolute
  std::vector<std::filesystem::path> shim_libraries;    // in preload order, each in shim_directory
  std::vector<std::string> device_uuids;                // "GPU-...", by broker ordinal
  std::string origin;  // the header's last lines ('\n'-separated): who wrote it, for which broker
};

// Why these paths cannot be handed to containers, or "" when they can: relative paths, a socket
// whose directory is not its own (/, /run, /tmp or a user's runtime directory would be mounted
// into every container), a character LD_PRELOAD reads as a separator.
std::string cdi_input_problem(const CdiSpecInput& input);

// The specification, as YAML (every string double-quoted).
std::string cdi_spec_yaml(const CdiSpecInput& input);

// gpu-broker cdi-spec: opens the device layer as the broker would with `options`, finds the shims
// in `shim_directory` (empty: the installation's), and prints the specification on stdout.
// Returns the process's exit status (0, or 1 with the reason on stderr).
int print_cdi_spec(const BrokerOptions& options, const std::string& shim_directory, const char* version);

}  // namespace gpubroker::broker
