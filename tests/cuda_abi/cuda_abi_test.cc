// Reports the compile-time comparisons of runtime_abi.h with NVIDIA's CUDA 12.9 and 13.0 headers
// (the *_check.cc units: if they compiled, the declarations agree), and compares the error table
// with the strings of the real libcudart of each version, which answers cudaGetErrorName and
// cudaGetErrorString without a GPU. A version whose headers or library this machine lacks is
// reported as skipped, never as passed: each version's cases carry its tag ([cuda13], [cuda12]),
// and meson runs each tag as a test of its own, which shows as SKIP where that version is absent.
#include <dlfcn.h>

#include <catch2/catch.hpp>
#include <string>

#include "gpubroker/cuda/runtime_abi.h"
#define GPUBROKER_ABI_REPORT
#include "tests/cuda_abi/check_support.h"
#include "tests/support/skip.h"

namespace rt = gpubroker::cuda::rt;
namespace abi = gpubroker::cuda_abi_test;

namespace {

[[maybe_unused]] void report(const abi::CheckSummary& summary, const char* version) {
  INFO(version << ": " << summary.what << ": " << summary.compile_time_checks
               << " compile-time assertions");
  CHECK(summary.compile_time_checks > 0);
  CHECK(summary.run_time_checks_passed);
  WARN(version << " checked: " << summary.what << " (" << summary.compile_time_checks
               << " static_asserts)");
}

// Compares every entry of rt::kErrorDescriptions, and a few values that are no error code, with
// the real runtime `library` (dlopen'ed from `path`), and closes it.
void compare_error_strings_with(void* library, const std::string& path) {
  using ErrorText = const char* (*)(int);
  auto name = reinterpret_cast<ErrorText>(dlsym(library, "cudaGetErrorName"));
  auto text = reinterpret_cast<ErrorText>(dlsym(library, "cudaGetErrorString"));
  REQUIRE(name != nullptr);
  REQUIRE(text != nullptr);
  for (const rt::ErrorDescription& d : rt::kErrorDescriptions) {
    INFO("error " << static_cast<int>(d.value));
    CHECK(std::string(name(d.value)) == d.name);
    CHECK(std::string(text(d.value)) == d.description);
  }
  for (int not_an_error : {10, 11, 1000, 10001, -1}) {
    INFO("value " << not_an_error);
    CHECK(std::string(name(not_an_error)) == rt::error_name(not_an_error));
    CHECK(std::string(text(not_an_error)) == rt::error_string(not_an_error));
  }
  WARN("checked " << std::size(rt::kErrorDescriptions) << " error names and strings against "
                  << path);
  dlclose(library);
}

}  // namespace

TEST_CASE("the CUDA 13.0 ABI declared by the project equals NVIDIA's 13.0 headers", "[cuda_abi][cuda13]") {
#if GPUBROKER_HAVE_CUDA13_HEADERS
  report(abi::device_prop_13(), "13");
  report(abi::struct_layouts_13(), "13");
  report(abi::enums_13(), "13");
  report(abi::flags_13(), "13");
#else
  SKIP_CASE("no CUDA 13 cuda_runtime_api.h was found at configure time (CUDA_PATH, else /usr/local/cuda)");
#endif
}

TEST_CASE("the CUDA 12.x ABI declared by the project equals NVIDIA's 12.9 headers", "[cuda_abi][cuda12]") {
#if GPUBROKER_HAVE_CUDA12_HEADERS
  report(abi::device_prop_12(), "12");
  report(abi::struct_layouts_12(), "12");
  report(abi::enums_12(), "12");
  report(abi::flags_12(), "12");
#else
  SKIP_CASE("the CUDA 12.9 headers from PyPI are absent; run scripts/setup-cuda12.sh");
#endif
}

TEST_CASE("every error code has the name and string the real libcudart.so.13 gives it",
          "[cuda_abi][cuda13]") {
  const std::string path = GPUBROKER_LIBCUDART13_PATH;
  if (path.empty()) SKIP_CASE("no libcudart.so.13 was found at configure time");
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) SKIP_CASE("cannot dlopen " << path << ": " << dlerror());
  compare_error_strings_with(library, path);
}

TEST_CASE("every error code has the name and string the real libcudart.so.12 gives it",
          "[cuda_abi][cuda12]") {
  const std::string path = GPUBROKER_LIBCUDART12_PATH;
  if (path.empty()) SKIP_CASE("no libcudart.so.12 from PyPI; run scripts/setup-cuda12.sh");
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) SKIP_CASE("cannot dlopen " << path << ": " << dlerror());
  compare_error_strings_with(library, path);
}

TEST_CASE("error lookups answer like the runtime for codes that exist and codes that do not",
          "[cuda_abi]") {
  CHECK(std::string(rt::error_name(rt::cudaErrorNotSupported)) == "cudaErrorNotSupported");
  CHECK(std::string(rt::error_string(rt::cudaErrorNotSupported)) == "operation not supported");
  CHECK(std::string(rt::error_string(rt::cudaSuccess)) == "no error");
  CHECK(std::string(rt::error_name(12345)) == "unrecognized error code");
  static_assert(rt::find_error_description(rt::cudaErrorUnknown)->value == rt::cudaErrorUnknown);
}
