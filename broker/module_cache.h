// Modules shared between sessions. Every runner process of a host ships the same fatbins (a
// multi-architecture libggml-cuda carries hundreds of MB of them); loading each once while any
// session holds it saves the driver's load time and the device memory of every copy.
//
// Sharing is safe only for an image without device or constant variables (the fatbin parser's
// has_writable_globals): with none, no session can write anything another session's kernels
// read. Every other image gets a module of its own. Identity is by content and context: the cache
// keeps the bytes of each shared image and compares them in full, so no client can have its code
// taken for another's by a hash collision, and a module is loaded once per context that runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "broker/device_context.h"
#include "fatbin/fatbin.h"

namespace gpubroker::broker {

class ModuleCache {
 public:
  struct Module {
    cuda::CUmodule handle = nullptr;
    bool shared = false;  // other sessions may hold it too
    std::vector<fatbin::KernelInfo> kernels;  // the parser's layouts, which clients pack by
    const DeviceContext* context = nullptr;  // where it is loaded: its functions run there
  };

  ModuleCache() = default;
  ModuleCache(const ModuleCache&) = delete;
  ModuleCache& operator=(const ModuleCache&) = delete;

  // The module of `image` (its bytes, NUL-terminated for the driver) in `context`: the one
  // already loaded there from the same bytes when `shareable`, else a new one. It is unloaded, in
  // its context, when the last holder drops it, on whichever thread that is.
  cuda::CUresult load(const DeviceContext& context, std::span<const std::byte> image, bool shareable,
                      std::vector<fatbin::KernelInfo> kernels, std::shared_ptr<const Module>& out);

  // Shared modules loaded now (for tests and stats).
  [[nodiscard]] std::size_t shared_count() const;

 private:
  struct Entry {
    const DeviceContext* context;
    std::vector<std::byte> image;
    std::weak_ptr<const Module> module;
    const Module* raw;  // which entry a module's deleter removes
  };
  void forget(std::uint64_t hash, const Module* module);

  mutable std::mutex lock_;
  std::unordered_multimap<std::uint64_t, Entry> shared_;  // by a hash of the image
};

}  // namespace gpubroker::broker
