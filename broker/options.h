// gpu-broker's options: the command line, and an optional config file of the same keys
// ("key = value" lines, '#' comments), the command line winning.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker/device_layer.h"
#include "ipc/doorbell.h"
#include "ipc/log.h"
#include "ipc/server_session.h"

namespace gpubroker::broker {

struct BrokerOptions {
  std::string socket_path;  // default: ipc::default_socket_path()
  // The socket file's mode, set when it is made: connecting takes write permission on it, so the
  // default lets in the broker's user and group only (the service's group, gpu-broker).
  mode_t socket_mode = 0660;
  DriverChoice driver = DriverChoice::kAuto;
  std::string sim_library;  // empty: next to the binary
  std::optional<unsigned> sim_devices;  // devices the sim offers; unset: GPUBROKER_SIM_DEVICES, else 1
  std::optional<std::string> sim_kernels;  // kernel plugins, colon-separated ("" for none); unset: the default
  std::string sim_discover;  // the sim's discovery record; empty: discovery off
  // Whose sessions share a CUDA context: each user's own (the default), or everyone's (trusted
  // runners only: one session's kernels can then reach any other session's memory).
  Isolation isolation = Isolation::kUid;
  // How long a user's contexts outlive the user's last session (a discovery pass and the runner
  // after it should not make them twice: a context costs a GPU tens of milliseconds to make).
  std::uint64_t context_linger_seconds = 60;
  std::vector<uid_t> allowed_uids;
  std::vector<gid_t> allowed_gids;
  std::uint64_t session_memory_limit = 0;  // bytes; 0: none
  // The broker's host memory one session may hold (module images, objects being received). Runners
  // load the images they launch from, a few MB each; llama.cpp's whole CUDA build is about 200 MB.
  std::uint64_t session_host_memory_limit = 2ull << 30;
  std::uint64_t pipe_bytes = 8ull << 20;
  std::uint64_t arena_bytes = 16ull << 30;
  ipc::WaitMode wait = ipc::WaitMode::kAdaptive;  // BENCHMARKS.md, "Wait policies": why not sleep
  ipc::LogLevel log_level = ipc::LogLevel::kInfo;
  std::string metrics_listen;  // "HOST:PORT" of the Prometheus endpoint; empty: none
  ipc::ListenerLimits limits;  // sessions and handshakes at once, in total and per uid
};

// What gpu-broker was asked to do: serve (the daemon), or print the CDI specification of the
// devices it would serve with the same options (gpu-broker cdi-spec, broker/cdi_spec.h).
enum class Command { kServe, kCdiSpec };

struct ParsedOptions {
  Command command = Command::kServe;
  BrokerOptions options;
  std::string shim_directory;  // cdi-spec's --shim-dir; empty: the installation's
  bool help = false;
  bool version = false;
  std::string error;  // non-empty: the message to print, exit 2
};

ParsedOptions parse_options(int argc, char** argv);
const char* usage_text();

}  // namespace gpubroker::broker
