// A shim library that a gpubroker-bench scenario loads with dlopen, exactly as ggml's or Ollama's
// loader would find it, so that every figure includes the shim's own work; and where the bench
// finds the driver and NVML shims beside itself. Used by the scenarios that go through the shims.
#pragma once

#include <string>
#include <string_view>

namespace gpubroker::bench {

// Prints "gpubroker-bench SCENARIO: WHAT" and exits with status 1.
[[noreturn]] void fail(std::string_view scenario, const std::string& what);

// The libcuda.so.1 and libnvidia-ml.so.1 shims beside this binary (build tree or installed), or "".
std::string driver_shim_path();
std::string nvml_shim_path();

class ShimLibrary {
 public:
  // dlopen(RTLD_NOW | RTLD_LOCAL); exits through fail() when the library cannot be loaded.
  ShimLibrary(const std::string& path, std::string_view scenario);

  // The exported function `name` as a pointer of type F; exits through fail() when it is missing.
  template <class F>
  [[nodiscard]] F get(const char* name) const {
    return reinterpret_cast<F>(address(name));
  }

 private:
  [[nodiscard]] void* address(const char* name) const;

  void* handle_;
  std::string path_;
  std::string_view scenario_;
};

}  // namespace gpubroker::bench
