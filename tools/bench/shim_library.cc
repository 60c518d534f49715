#include "tools/bench/shim_library.h"

#include <dlfcn.h>
#include <fmt/core.h>

#include <cstdlib>

#include "tools/bench/bench_broker.h"

namespace gpubroker::bench {

void fail(std::string_view scenario, const std::string& what) {
  fmt::print(stderr, "gpubroker-bench {}: {}\n", scenario, what);
  std::exit(1);
}

std::string driver_shim_path() {
  return find_beside({"../../shim/driver/libcuda.so.1", in_shim_directory("libcuda.so.1")});
}

std::string nvml_shim_path() {
  return find_beside({"../../shim/nvml/libnvidia-ml.so.1", in_shim_directory("libnvidia-ml.so.1")});
}

ShimLibrary::ShimLibrary(const std::string& path, std::string_view scenario)
    : handle_(path.empty() ? nullptr : ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)), path_(path), scenario_(scenario) {
  if (path.empty()) fail(scenario, "a shim library is missing beside this binary (build it first)");
  if (handle_ == nullptr) fail(scenario, fmt::format("cannot load {}: {}", path, ::dlerror()));
}

void* ShimLibrary::address(const char* name) const {
  void* p = ::dlsym(handle_, name);
  if (p == nullptr) fail(scenario_, fmt::format("{} lacks {}", path_, name));
  return p;
}

}  // namespace gpubroker::bench
