#include "broker/options.h"

#include "broker/metrics.h"
#include "ipc/socket_path.h"

#include <fmt/core.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace gpubroker::broker {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

// "64M", "16G", "4096": bytes.
std::optional<std::uint64_t> parse_bytes(const std::string& text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || p == text.data()) return std::nullopt;
  std::string suffix(p, end);
  const std::map<std::string, int> shifts{{"", 0}, {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30}, {"GiB", 30}};
  auto it = shifts.find(suffix);
  if (it == shifts.end()) return std::nullopt;
  return value << it->second;
}

template <class T>
bool parse_id_list(const std::string& text, std::vector<T>& out) {
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    T value{};
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (ec != std::errc() || p != item.data() + item.size()) return false;
    out.push_back(value);
  }
  return true;
}

// Applies one option; returns an error message or "".
std::string apply(BrokerOptions& o, const std::string& key, const std::string& value) {
  if (key == "socket") {
    o.socket_path = value;
  } else if (key == "socket-mode") {
    unsigned mode = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), mode, 8);
    if (ec != std::errc() || p != value.data() + value.size() || value.empty() || mode > 0777) {
      return fmt::format("--socket-mode takes an octal file mode such as 0660, not '{}'", value);
    }
    o.socket_mode = static_cast<mode_t>(mode);
  } else if (key == "driver") {
    if (value == "auto") o.driver = DriverChoice::kAuto;
    else if (value == "cuda") o.driver = DriverChoice::kCuda;
    else if (value == "sim") o.driver = DriverChoice::kSim;
    else return fmt::format("--driver must be auto, cuda or sim, not '{}'", value);
  } else if (key == "sim-library") {
    o.sim_library = value;
  } else if (key == "sim-devices") {
    unsigned devices = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), devices);
    if (ec != std::errc() || p != value.data() + value.size() || devices < 1 || devices > wire::kMaxDevices) {
      return fmt::format("--sim-devices takes a device count from 1 to {}, not '{}'", wire::kMaxDevices, value);
    }
    o.sim_devices = devices;
  } else if (key == "sim-kernels") {
    if (value.empty()) return "--sim-kernels takes PATH[:PATH...] or none, not ''";
    o.sim_kernels = value == "none" ? "" : value;
  } else if (key == "sim-discover") {
    o.sim_discover = value;
  } else if (key == "isolation") {
    if (value == "uid") o.isolation = Isolation::kUid;
    else if (value == "none") o.isolation = Isolation::kNone;
    else return fmt::format("--isolation must be uid or none, not '{}'", value);
  } else if (key == "context-linger") {
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), o.context_linger_seconds);
    if (ec != std::errc() || p != value.data() + value.size()) return fmt::format("--context-linger takes seconds, not '{}'", value);
  } else if (key == "allow-uid") {
    if (!parse_id_list(value, o.allowed_uids)) return fmt::format("bad uid list '{}'", value);
  } else if (key == "allow-gid") {
    if (!parse_id_list(value, o.allowed_gids)) return fmt::format("bad gid list '{}'", value);
  } else if (key == "session-memory-limit" || key == "session-host-memory-limit" || key == "pipe-bytes" ||
             key == "arena-bytes") {
    auto bytes = parse_bytes(value);
    if (!bytes) return fmt::format("--{} takes a size like 4096, 64M or 16G, not '{}'", key, value);
    (key == "session-memory-limit"        ? o.session_memory_limit
     : key == "session-host-memory-limit" ? o.session_host_memory_limit
     : key == "pipe-bytes"                ? o.pipe_bytes
                                          : o.arena_bytes) = *bytes;
  } else if (key == "max-sessions" || key == "max-sessions-per-user" || key == "max-handshakes" ||
             key == "max-handshakes-per-user") {
    std::uint32_t count = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), count);
    if (ec != std::errc() || p != value.data() + value.size() || count < 1) {
      return fmt::format("--{} takes a count of at least 1, not '{}'", key, value);
    }
    (key == "max-sessions"            ? o.limits.sessions
     : key == "max-sessions-per-user" ? o.limits.sessions_per_user
     : key == "max-handshakes"        ? o.limits.handshakes
                                      : o.limits.handshakes_per_user) = count;
  } else if (key == "wait-policy") {
    if (value == "spin") o.wait = ipc::WaitMode::kSpin;
    else if (value == "adaptive") o.wait = ipc::WaitMode::kAdaptive;
    else if (value == "sleep") o.wait = ipc::WaitMode::kSleep;
    else return fmt::format("--wait-policy must be spin, adaptive or sleep, not '{}'", value);
  } else if (key == "log-level") {
    if (value == "error") o.log_level = ipc::LogLevel::kError;
    else if (value == "warning") o.log_level = ipc::LogLevel::kWarning;
    else if (value == "info") o.log_level = ipc::LogLevel::kInfo;
    else if (value == "debug") o.log_level = ipc::LogLevel::kDebug;
    else return fmt::format("--log-level must be error, warning, info or debug, not '{}'", value);
  } else if (key == "metrics-listen") {
    if (!parse_listen_address(value)) return fmt::format("--metrics-listen takes HOST:PORT (e.g. 127.0.0.1:9400), not '{}'", value);
    o.metrics_listen = value;
  } else {
    return fmt::format("unknown option '{}'", key);
  }
  return "";
}

std::string apply_config_file(BrokerOptions& o, const std::string& path) {
  std::ifstream file(path);
  if (!file) return fmt::format("cannot read config file '{}'", path);
  int number = 0;
  for (std::string line; std::getline(file, line);) {
    ++number;
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const auto equals = line.find('=');
    if (equals == std::string::npos) return fmt::format("{}:{}: expected 'key = value'", path, number);
    if (auto error = apply(o, trim(line.substr(0, equals)), trim(line.substr(equals + 1))); !error.empty()) {
      return fmt::format("{}:{}: {}", path, number, error);
    }
  }
  return "";
}

}  // namespace

const char* usage_text() {
  return "usage: gpu-broker [options]\n"
         "       gpu-broker cdi-spec [options] [--shim-dir=DIR]\n"
         "\n"
         "The resident GPU broker: owns the GPU and serves CUDA calls of runner processes\n"
         "over shared memory. cdi-spec prints, instead, the Container Device Interface\n"
         "specification (YAML, for /etc/cdi/gpubroker.yaml) of the devices it would serve with\n"
         "the same options: kind gpubroker.io/gpu, devices all, 0, 1, ... and GPU-<uuid>, each\n"
         "mounting the socket's directory and the shim directory into the container and\n"
         "preloading the shims there.\n"
         "\n"
         "  --socket=PATH               listening socket (default /run/gpu-broker/broker.sock as root,\n"
         "                              $XDG_RUNTIME_DIR/gpu-broker.sock otherwise)\n"
         "  --socket-mode=MODE          the socket file's mode, octal (default 0660: the broker's user and\n"
         "                              group may connect; 0666: every local user, gated by --allow-*)\n"
         "  --driver=auto|cuda|sim      auto: the real driver when a GPU is usable, else sim\n"
         "  --sim-library=PATH          the sim driver library (default: next to this binary)\n"
         "  --sim-devices=N             devices the sim driver offers, 1 to 16 (default 1, or\n"
         "                              $GPUBROKER_SIM_DEVICES); each has its own UUID, PCI bus id and memory\n"
         "  --sim-kernels=PATH[:PATH]|none  the sim's kernel plugins (default $GPUBROKER_SIM_KERNELS, else\n"
         "                              the ggml kernels next to the sim driver, which run llama.cpp)\n"
         "  --sim-discover=FILE         the sim records each distinct kernel a run launches in FILE, and runs\n"
         "                              a kernel it has no host implementation for as a no-op\n"
         "  --isolation=uid|none        uid (default): each user's sessions run in CUDA contexts of their\n"
         "                              own, which no other user's kernel can reach; none: one context for\n"
         "                              all (trusted runners only: any session's kernel can reach any memory)\n"
         "  --context-linger=SECONDS    how long a user's contexts outlive its last session (default 60)\n"
         "  --allow-uid=UID[,UID...]    peers allowed by user id (default: anyone who can open the socket)\n"
         "  --allow-gid=GID[,GID...]    peers allowed by group id, primary or supplementary\n"
         "  --session-memory-limit=SIZE device memory one session may hold on each device (e.g. 8G;\n"
         "                              default: no limit); it is the total the session sees per device\n"
         "  --session-host-memory-limit=SIZE  the broker's host memory one session may hold: its module\n"
         "                              images and what it is sending (default 2G; 0: no limit)\n"
         "  --pipe-bytes=SIZE           staging pipe size per direction per session (default 8M)\n"
         "  --arena-bytes=SIZE          host arena (pinned memory) per session, sparse (default 16G)\n"
         "  --max-sessions=N            sessions open at once, in total (default 1024); a client past it\n"
         "                              is refused at once, told which limit it hit\n"
         "  --max-sessions-per-user=N   sessions open at once by one uid (default 256)\n"
         "  --max-handshakes=N          connections whose hello has not come yet, in total (default 4096);\n"
         "                              each is closed if its hello takes over a second\n"
         "  --max-handshakes-per-user=N the same, of one uid (default 64)\n"
         "  --wait-policy=spin|adaptive|sleep  how dispatchers wait for requests (default adaptive)\n"
         "  --log-level=error|warning|info|debug (default info)\n"
         "  --metrics-listen=HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics (default: off)\n"
         "  --config=FILE               read 'key = value' options (the same names) from FILE first\n"
         "  --shim-dir=DIR              (cdi-spec) the shim libraries the containers get (default: the\n"
         "                              installation's libdir/gpubroker)\n"
         "  --help, --version\n";
}

ParsedOptions parse_options(int argc, char** argv) {
  ParsedOptions parsed;
  std::vector<std::pair<std::string, std::string>> given;
  int first = 1;
  if (argc > 1 && std::string(argv[1]) == "cdi-spec") {
    parsed.command = Command::kCdiSpec;
    first = 2;
  }
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      parsed.help = true;
      continue;
    }
    if (arg == "--version") {
      parsed.version = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.find('=') == std::string::npos) {
      parsed.error = fmt::format("expected --option=value, got '{}'", arg);
      return parsed;
    }
    const auto equals = arg.find('=');
    if (parsed.command == Command::kCdiSpec && arg.substr(2, equals - 2) == "shim-dir") {
      parsed.shim_directory = arg.substr(equals + 1);
      continue;
    }
    given.emplace_back(arg.substr(2, equals - 2), arg.substr(equals + 1));
  }
  for (const auto& [key, value] : given) {
    if (key == "config") {
      if (parsed.error = apply_config_file(parsed.options, value); !parsed.error.empty()) return parsed;
    }
  }
  for (const auto& [key, value] : given) {
    if (key == "config") continue;
    if (parsed.error = apply(parsed.options, key, value); !parsed.error.empty()) return parsed;
  }
  if (parsed.options.socket_path.empty()) parsed.options.socket_path = ipc::default_socket_path();
  return parsed;
}

}  // namespace gpubroker::broker
