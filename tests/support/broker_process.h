// Test support: a real gpu-broker process (the binary named by $GPUBROKER_BROKER) on the sim
// driver — or the driver $GPUBROKER_TEST_DRIVER names — stopped with SIGTERM on destruction.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/support/forked_server.h"

namespace gpubroker::testing {

const char* env_or(const char* name, const char* fallback);

struct BrokerSettings {
  std::vector<std::string> arguments;                         // extra --options
  std::vector<std::pair<std::string, std::string>> environment;  // for the broker process only
};

class BrokerProcess {
 public:
  explicit BrokerProcess(const TempDir& dir, BrokerSettings settings = {});
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;
  ~BrokerProcess();

  int stop();  // SIGTERM; returns the exit status
  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  std::string socket_path_;
  pid_t pid_ = -1;
};

}  // namespace gpubroker::testing
