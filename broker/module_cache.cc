#include "broker/module_cache.h"

#include <algorithm>

#include "ipc/checksum.h"

namespace gpubroker::broker {

namespace {

// A bucket index, never an identity (entries are compared in full). The transport's streaming
// checksum reads a word at a time: images reach hundreds of MB.
std::uint64_t hash_of(std::span<const std::byte> bytes) {
  ipc::Checksum checksum;
  checksum.update(bytes);
  return checksum.value();
}

}  // namespace

cuda::CUresult ModuleCache::load(const DeviceContext& context, std::span<const std::byte> image, bool shareable, std::vector<fatbin::KernelInfo> kernels,
                                 std::shared_ptr<const Module>& out) {
  const std::uint64_t hash = shareable ? hash_of(image) : 0;
  // Held across the driver's load so that two sessions shipping the same image at once load it once.
  std::unique_lock guard(lock_, std::defer_lock);
  if (shareable) {
    guard.lock();
    auto [first, last] = shared_.equal_range(hash);
    for (auto it = first; it != last; ++it) {
      if (it->second.context != &context || !std::ranges::equal(it->second.image, image)) continue;
      if (std::shared_ptr<const Module> alive = it->second.module.lock()) {
        out = std::move(alive);
        return cuda::CUDA_SUCCESS;
      }
    }
  }
  cuda::CUmodule handle = nullptr;
  if (cuda::CUresult r = context.module_load_data(&handle, image.data()); r != cuda::CUDA_SUCCESS) return r;
  if (!shareable) {
    out = std::shared_ptr<const Module>(new Module{handle, false, std::move(kernels), &context}, [](const Module* m) {
      m->context->module_unload(m->handle);
      delete m;
    });
    return cuda::CUDA_SUCCESS;
  }
  auto module = std::shared_ptr<const Module>(new Module{handle, true, std::move(kernels), &context},
                                              [this, hash](const Module* m) {
                                                forget(hash, m);
                                                m->context->module_unload(m->handle);
                                                delete m;
                                              });
  shared_.emplace(hash, Entry{&context, std::vector<std::byte>(image.begin(), image.end()), module, module.get()});
  out = std::move(module);
  return cuda::CUDA_SUCCESS;
}

void ModuleCache::forget(std::uint64_t hash, const Module* module) {
  std::lock_guard guard(lock_);
  auto [first, last] = shared_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    if (it->second.raw == module) {
      shared_.erase(it);
      return;
    }
  }
}

std::size_t ModuleCache::shared_count() const {
  std::lock_guard guard(lock_);
  return static_cast<std::size_t>(std::ranges::count_if(shared_, [](const auto& e) { return !e.second.module.expired(); }));
}

}  // namespace gpubroker::broker
