// The broker a runtime-level benchmark talks to: a running one (--socket=PATH), or a sim broker
// the benchmark starts beside itself and stops when done. Also finds the shim the benchmark
// loads. For gpubroker-bench's scenarios that go through the shim.
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace gpubroker::bench {

// The first of `relative` paths (from this binary's directory: the build tree's layout, then the
// installed one) that exists, or "".
std::string find_beside(std::initializer_list<const char*> relative);

// The libcudart.so.13 shim beside this binary, or "".
std::string runtime_shim_path();

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
