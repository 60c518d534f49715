#include "sim/kernel_registry.h"

#include <dlfcn.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

#include <fmt/format.h>

namespace gpubroker::sim {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, GpubrokerSimKernel, std::less<>> kernels;
  std::set<std::string, std::less<>> waiting;  // named by a plugin's gpubroker_sim_waiting_kernels
};

Registry& registry() {
  static auto* instance = new Registry;  // never destroyed: workers may look up at exit
  return *instance;
}

void register_from_plugin(const char* mangled_name, GpubrokerSimKernel kernel) {
  if (mangled_name != nullptr && kernel != nullptr) register_kernel(mangled_name, kernel);
}

}  // namespace

void register_kernel(std::string_view mangled_name, GpubrokerSimKernel kernel) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.kernels.insert_or_assign(std::string(mangled_name), kernel);
}

FoundKernel find_kernel(std::string_view mangled_name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto found = r.kernels.find(mangled_name);
  if (found == r.kernels.end()) return {};
  return {found->second, r.waiting.contains(mangled_name)};
}

void load_plugins(std::string_view colon_separated_paths) {
  while (!colon_separated_paths.empty()) {
    std::size_t colon = colon_separated_paths.find(':');
    std::string path(colon_separated_paths.substr(0, colon));
    colon_separated_paths =
        colon == std::string_view::npos ? std::string_view{} : colon_separated_paths.substr(colon + 1);
    if (path.empty()) continue;
    // Kept loaded for the life of the process: registered functions point into it.
    void* plugin = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (plugin == nullptr) {
      fmt::print(stderr, "sim: cannot load kernel plugin '{}': {}\n", path, dlerror());
      continue;
    }
    if (void* init = dlsym(plugin, "gpubroker_sim_plugin_init"); init != nullptr)
      reinterpret_cast<GpubrokerSimPluginInit>(init)(&register_from_plugin);
    if (void* names = dlsym(plugin, "gpubroker_sim_waiting_kernels"); names != nullptr) {
      Registry& r = registry();
      std::lock_guard lock(r.mutex);
      for (auto* name = static_cast<const char* const*>(names); *name != nullptr; ++name) r.waiting.emplace(*name);
    }
  }
}

}  // namespace gpubroker::sim
