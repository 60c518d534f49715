#include "tests/support/broker_process.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "tests/support/eventually.h"

namespace gpubroker::testing {

const char* env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

BrokerProcess::BrokerProcess(const TempDir& dir, BrokerSettings settings) : socket_path_(dir.path() + "/broker.sock") {
  // tests/gpu/run.sh sets GPUBROKER_TEST_DRIVER=cuda to run the same scenarios on a real GPU.
  std::vector<std::string> args = {env_or("GPUBROKER_BROKER", "gpu-broker"),
                                   std::string("--driver=") + env_or("GPUBROKER_TEST_DRIVER", "sim"),
                                   "--socket=" + socket_path_, "--log-level=warning", "--arena-bytes=1G"};
  if (const char* sim = std::getenv("GPUBROKER_SIM_LIBRARY")) args.push_back(std::string("--sim-library=") + sim);
  args.insert(args.end(), settings.arguments.begin(), settings.arguments.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    for (const auto& [name, value] : settings.environment) ::setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  (void)poll_until([&] { return ::access(socket_path_.c_str(), F_OK) == 0; });
}

BrokerProcess::~BrokerProcess() {
  if (pid_ > 0) stop();
}

int BrokerProcess::stop() {
  ::kill(pid_, SIGTERM);
  const int status = wait_for_child(pid_);
  pid_ = -1;
  return status;
}

}  // namespace gpubroker::testing
