// The broker a runtime-level benchmark talks to: a running one (--socket=PATH), or a sim broker
// the benchmark starts beside itself and stops when done. Also finds the shim the benchmark
// loads. For gpubroker-bench's scenarios that go through the shim.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

namespace gpubroker::bench {

// The first of `candidates` that exists, or "": relative ones from this binary's directory (the
// build tree's layout), absolute ones as they are (the installed layout: in_shim_directory()).
std::string find_beside(std::initializer_list<std::filesystem::path> candidates);

// `name` in the installation's shim directory (where the shims, the sim and the bench's kernel
// plugin and fatbin are installed), found from this binary as installed.
std::filesystem::path in_shim_directory(const char* name);

// The libcudart.so.13 shim beside this binary, or "".
std::string runtime_shim_path();

// The fatbin of the launch and graph scenarios' kernels: the source tree's from a build tree's
// binary, else the installed copy.
std::string default_fatbin_path();

class BenchBroker {
 public:
  // Uses `socket` when it is not empty; otherwise starts gpu-broker --driver=sim from beside
  // this binary, with GPUBROKER_SIM_KERNELS=`kernel_plugin` when that is not empty, and waits for
  // its socket, passing `broker_arguments` after its own (e.g. --wait-policy=sleep). Exits the
  // process with a message when there is no broker to start.
  BenchBroker(const std::string& socket, const std::string& kernel_plugin, const char* scenario,
              const std::vector<std::string>& broker_arguments = {});
  BenchBroker(const BenchBroker&) = delete;
  BenchBroker& operator=(const BenchBroker&) = delete;
  ~BenchBroker();  // stops a broker it started

  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] bool started() const { return pid_ > 0; }
  // The broker's process id when this object started it, else 0.
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  std::string socket_;
  std::string directory_;
  pid_t pid_ = 0;
};

}  // namespace gpubroker::bench
