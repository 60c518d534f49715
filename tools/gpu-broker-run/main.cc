// gpu-broker-run: runs a command so that it, and every process it starts, reaches the broker.
//
//   gpu-broker-run [--socket=PATH] [--shim-dir=DIR[:DIR...]] [--trace=FILE] [--print-env] [--] CMD [ARGS...]
//
// 1. It checks that a broker answers at the socket (a real handshake, bounded by 0.8 s) and
//    otherwise fails at once with a message that says what to start.
// 2. It sets GPUBROKER_SOCKET, LD_PRELOAD to every shim library by absolute path, and puts the
//    shim directories first in LD_LIBRARY_PATH; then it execs CMD.
//
// Why preload by path: Ollama starts each runner with its own library directories (which hold the
// real libcudart.so.12 and libcublas.so.12) prepended to LD_LIBRARY_PATH, so the library path
// alone loses to them, and so would a preload by bare soname (it is looked up along that same
// path). A preloaded object is already loaded under its soname when the runner's DT_NEEDED
// libcudart.so.12 is resolved, so the dynamic linker takes it and never searches the path. The
// environment is inherited by every child, so runners that Ollama or llama-server spawn get the
// same treatment.
//
// The shim libraries are found, not listed (launch/shim_libraries.h says which files they are, the
// same rule as gpu-broker cdi-spec's). The shim directory is, in order: --shim-dir,
// $GPUBROKER_SHIM_DIR, the install's libdir/gpubroker (relative to this executable), the build
// tree's shim/ (relative to this executable, searched below).
#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <optional>
#include <string>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "ipc/client_session.h"
#include "launch/shim_libraries.h"
#include "monitor/stats_reader.h"

// Defined when this program is built with the sanitizers (weak: null otherwise). A sanitized
// shim needs its sanitizer runtimes loaded before anything else, so they are preloaded first.
extern "C" void __asan_init() __attribute__((weak));
extern "C" void __ubsan_handle_add_overflow() __attribute__((weak));

namespace {

namespace fs = std::filesystem;
namespace launch = gpubroker::launch;

constexpr int kExitNoBroker = 69;  // EX_UNAVAILABLE
constexpr int kExitUsage = 2;

const char* kUsage =
    "usage: gpu-broker-run [--socket=PATH] [--shim-dir=DIR[:DIR...]] [--trace=FILE] [--print-env] [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD, and every process it starts, with gpubroker's CUDA shim libraries preloaded, so that\n"
    "their CUDA calls go to the gpu-broker at the socket.\n"
    "\n"
    "  --socket=PATH     the broker's socket (default: $GPUBROKER_SOCKET, else your own broker's\n"
    "                    default socket if it exists, else /run/gpu-broker/broker.sock)\n"
    "  --shim-dir=DIRS   where the shim libraries are (default: $GPUBROKER_SHIM_DIR, else found\n"
    "                    next to this program: the install's libdir/gpubroker, or the build tree)\n"
    "  --trace=FILE      record every CUDA call of every process into FILE.<pid> (read it with\n"
    "                    gpu-broker-trace; sets GPUBROKER_TRACE)\n"
    "  --print-env       print the environment CMD would get, as shell assignments, and exit\n"
    "                    (without checking for a broker)\n"
    "\n"
    "Exits 69 when no broker answers, 127 when CMD cannot be run, else with CMD's status.\n";

struct Options {
  std::string socket_path;
  std::string shim_dirs;
  std::string trace_file;  // empty: no trace
  bool print_env = false;
  std::vector<char*> command;
};

launch::ShimLibraries find_shims(const Options& options, std::string& searched) {
  launch::ShimLibraries shims;
  std::string given = options.shim_dirs;
  if (given.empty()) {
    if (const char* env = std::getenv("GPUBROKER_SHIM_DIR"); env != nullptr) given = env;
  }
  if (!given.empty()) {
    for (const std::string& dir : launch::search_path_entries(given)) shims.collect(dir);
    searched = given;
    return shims;
  }
  // Where the install puts them, and where the build tree has them, each relative to where this
  // program lives in the same layout (so a DESTDIR or relocated install works as well).
  const fs::path installed = launch::installed_shim_directory();
  shims.collect(installed);
  searched = installed.string();
  if (!shims.empty()) return shims;
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored).parent_path();
  const fs::path built = self / fs::path(GPUBROKER_BUILD_SHIM_DIR).lexically_relative(GPUBROKER_BUILD_BIN_DIR);
  if (fs::exists(built / ".." / "meson-private", ignored)) {
    shims.collect(built, 3);
    searched += " and " + built.lexically_normal().string();
  }
  return shims;
}

std::string library_of(void* symbol) {
  Dl_info info{};
  if (symbol == nullptr || ::dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Whether a broker answers at `socket_path`: a handshake like any client's, closed at once.
bool broker_answers(const std::string& socket_path, std::string& why) {
  gpubroker::ipc::ClientOptions client;
  client.socket_path = socket_path;
  client.protocol = gpubroker::wire::kProtocol;  // what the shims will speak: a broker that refuses it is reported
  client.program = "gpu-broker-run";
  client.handshake_timeout = std::chrono::milliseconds(800);
  auto session = gpubroker::ipc::ClientSession::connect(client);
  if (session) return true;
  why = gpubroker::ipc::describe(session.error());
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.rfind("--", 0) != 0) break;
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--print-env") {
      options.print_env = true;
    } else if (arg.rfind("--socket=", 0) == 0) {
      options.socket_path = arg.substr(9);
    } else if (arg.rfind("--shim-dir=", 0) == 0) {
      options.shim_dirs = arg.substr(11);
    } else if (arg.rfind("--trace=", 0) == 0 && arg.size() > 8) {
      options.trace_file = arg.substr(8);
    } else {
      fmt::print(stderr, "gpu-broker-run: unknown option '{}'\n{}", arg, kUsage);
      return kExitUsage;
    }
  }
  for (; i < argc; ++i) options.command.push_back(argv[i]);
  options.command.push_back(nullptr);
  if (options.command.size() == 1 && !options.print_env) {
    fmt::print(stderr, "gpu-broker-run: no command given\n{}", kUsage);
    return kExitUsage;
  }
  if (options.socket_path.empty()) options.socket_path = gpubroker::monitor::socket_to_watch();
  std::error_code ignored;
  options.socket_path = fs::absolute(options.socket_path, ignored).string();  // the command may chdir
  if (!options.trace_file.empty()) options.trace_file = fs::absolute(options.trace_file, ignored).string();

  std::string searched;
  const launch::ShimLibraries shims = find_shims(options, searched);
  if (shims.empty()) {
    fmt::print(stderr, "gpu-broker-run: no shim libraries (lib*.so.N) in {}; name their directory with --shim-dir=DIR "
               "or GPUBROKER_SHIM_DIR\n", searched);
    return 1;
  }

  if (!options.print_env) {
    std::string why;
    if (!broker_answers(options.socket_path, why)) {
      fmt::print(stderr,
                 "gpu-broker-run: no gpu-broker answers at {} ({}).\n"
                 "Start one first:\n"
                 "  sudo systemctl start gpu-broker               # the service (socket {})\n"
                 "  gpu-broker --driver=sim --socket={} &   # a test broker without a GPU\n"
                 "or point --socket=PATH or GPUBROKER_SOCKET at a running broker.\n",
                 options.socket_path, why, gpubroker::monitor::kServiceSocket, options.socket_path);
      return kExitNoBroker;
    }
  }

  std::vector<std::string> preload;
  for (void* runtime : {reinterpret_cast<void*>(&__asan_init), reinterpret_cast<void*>(&__ubsan_handle_add_overflow)}) {
    if (std::string library = library_of(runtime); !library.empty() && library.find(".so") != std::string::npos) {
      preload.push_back(library);
    }
  }
  for (const fs::path& shim : shims.paths()) preload.push_back(shim.string());
  const std::string ld_preload = launch::prepend_search_path(preload, std::getenv("LD_PRELOAD"));
  const std::string ld_library_path = launch::prepend_search_path(shims.directories(), std::getenv("LD_LIBRARY_PATH"));

  if (options.print_env) {
    fmt::print("GPUBROKER_SOCKET={}\nLD_PRELOAD={}\nLD_LIBRARY_PATH={}\n", shell_quoted(options.socket_path),
               shell_quoted(ld_preload), shell_quoted(ld_library_path));
    if (!options.trace_file.empty()) fmt::print("GPUBROKER_TRACE={}\n", shell_quoted(options.trace_file));
    return 0;
  }
  ::setenv("GPUBROKER_SOCKET", options.socket_path.c_str(), 1);
  ::setenv("LD_PRELOAD", ld_preload.c_str(), 1);
  ::setenv("LD_LIBRARY_PATH", ld_library_path.c_str(), 1);
  if (!options.trace_file.empty()) ::setenv("GPUBROKER_TRACE", options.trace_file.c_str(), 1);
  ::execvp(options.command[0], options.command.data());
  fmt::print(stderr, "gpu-broker-run: cannot run {}: {}\n", options.command[0], std::strerror(errno));
  return 127;
}
