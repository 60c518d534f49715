#include "tools/bench/bench_broker.h"

#include <fmt/core.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "launch/shim_libraries.h"

namespace gpubroker::bench {

std::string find_beside(std::initializer_list<std::filesystem::path> candidates) {
  const std::filesystem::path directory = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  for (const std::filesystem::path& candidate : candidates) {
    const auto path = directory / candidate;  // an absolute candidate stays as it is
    if (std::filesystem::exists(path)) return std::filesystem::weakly_canonical(path).string();
  }
  return "";
}

std::filesystem::path in_shim_directory(const char* name) { return launch::installed_shim_directory() / name; }

std::string runtime_shim_path() {
  return find_beside({"../../shim/runtime/13/libcudart.so.13", in_shim_directory("libcudart.so.13")});
}

std::string default_fatbin_path() {
  const std::string found = find_beside({GPUBROKER_BENCH_FATBIN, in_shim_directory("bench_kernels_sm90.fatbin")});
  return found.empty() ? GPUBROKER_BENCH_FATBIN : found;
}

BenchBroker::BenchBroker(const std::string& socket, const std::string& kernel_plugin, const char* scenario,
                         const std::vector<std::string>& broker_arguments)
    : socket_(socket) {
  if (!socket_.empty()) return;
  const std::string binary = find_beside({"../../broker/gpu-broker", "gpu-broker"});
  if (binary.empty()) {
    fmt::print(stderr, "gpubroker-bench {}: no gpu-broker beside this binary; pass --socket=PATH\n", scenario);
    std::exit(1);
  }
  directory_ = fmt::format("/tmp/gpubroker-bench-{}", ::getpid());
  std::filesystem::create_directories(directory_);
  socket_ = directory_ + "/broker.sock";
  pid_ = ::fork();
  if (pid_ == 0) {
    // A bench that exits without unwinding (a failed scenario calls std::exit) still stops it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (!kernel_plugin.empty()) ::setenv("GPUBROKER_SIM_KERNELS", kernel_plugin.c_str(), 1);
    std::vector<std::string> arguments{binary, "--driver=sim", "--socket=" + socket_, "--log-level=warning"};
    arguments.insert(arguments.end(), broker_arguments.begin(), broker_arguments.end());
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  for (int i = 0; i < 1000 && !std::filesystem::exists(socket_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

BenchBroker::~BenchBroker() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
  std::error_code ignored;
  std::filesystem::remove_all(directory_, ignored);
}

}  // namespace gpubroker::bench
