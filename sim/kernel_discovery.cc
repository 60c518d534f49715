#include "sim/kernel_discovery.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <fmt/format.h>

namespace gpubroker::sim {
namespace {

struct Discovery {
  std::atomic<bool> enabled{false};  // set once by start_discovery (cuInit), read by every launch
  int fd = -1;                       // written before `enabled` is released
  std::mutex mutex;
  std::set<std::string, std::less<>> recorded;  // guarded by mutex
};

Discovery& discovery() {
  static auto* instance = new Discovery;  // never destroyed: workers may launch at exit
  return *instance;
}

// The C++ name for the reader; the mangled name itself where it is not a C++ name.
std::string demangled(const std::string& mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> text(abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status),
                                                   &std::free);
  return status == 0 && text != nullptr ? std::string(text.get()) : mangled;
}

}  // namespace

bool start_discovery(std::string_view record_path) {
  Discovery& d = discovery();
  const std::string path(record_path);
  d.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (d.fd < 0) {
    fmt::print(stderr, "sim: cannot open the kernel discovery record '{}': {}\n", path, std::strerror(errno));
    return false;
  }
  d.enabled.store(true, std::memory_order_release);  // pairs with the acquire in discovery_enabled
  return true;
}

bool discovery_enabled() { return discovery().enabled.load(std::memory_order_acquire); }

void record_launch(const KernelRecord& kernel, const GpubrokerSimDim3& grid, const GpubrokerSimDim3& block,
                   unsigned shared_bytes, bool implemented) {
  Discovery& d = discovery();
  {
    std::lock_guard lock(d.mutex);
    if (!d.recorded.insert(kernel.name).second) return;
  }
  std::string sizes;
  for (const GpubrokerSimParam& param : kernel.layout)
    sizes += fmt::format("{}{}", sizes.empty() ? "" : ",", param.size);
  const std::string line =
      fmt::format("kernel\t{}\tgrid={},{},{}\tblock={},{},{}\tshared={}\tparams={}\timplemented={}\t{}\n", kernel.name,
                  grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes, sizes, implemented ? "yes" : "no",
                  demangled(kernel.name));
  // One write per line: O_APPEND keeps lines whole between writers. A short write of a line this
  // size to a regular file means the disk is full; the record is then incomplete, as it says.
  if (::write(d.fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    fmt::print(stderr, "sim: the kernel discovery record lost a line: {}\n", std::strerror(errno));
}

int no_op_kernel(const GpubrokerSimLaunch*) { return 0; }

}  // namespace gpubroker::sim
