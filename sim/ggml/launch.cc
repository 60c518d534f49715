#include "sim/ggml/launch.h"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>

namespace gpubroker::sim::ggml {

bool Launch::layout_is(const std::uint32_t* sizes, std::size_t count) const {
  bool same = launch_->param_count == count;
  for (std::size_t i = 0; same && i < count; ++i) {
    const GpubrokerSimParam& param = launch_->param_layout[i];
    same = param.size == sizes[i] && std::uint64_t{param.offset} + param.size <= launch_->param_bytes;
  }
  if (!same) {
    std::string given;
    for (std::uint32_t i = 0; i < launch_->param_count; ++i)
      given += fmt::format("{}{}", i == 0 ? "" : ",", launch_->param_layout[i].size);
    std::string expected;
    for (std::size_t i = 0; i < count; ++i) expected += fmt::format("{}{}", i == 0 ? "" : ",", sizes[i]);
    (void)unsupported(fmt::format("its parameter layout (sizes {}) is not the signature's ({})", given, expected));
  }
  return same;
}

bool Launch::accessible(std::string_view parameter, const void* base, std::size_t element_bytes,
                        std::initializer_list<Axis> axes, Access access) const {
  // Offsets in elements, in 128 bits: no product or sum of 64-bit counts and strides can wrap.
  __int128 lowest = 0;
  __int128 highest = 0;
  for (const Axis& axis : axes) {
    if (axis.count <= 0) return true;  // no element at all
    const __int128 reach = static_cast<__int128>(axis.count - 1) * axis.stride;
    (reach < 0 ? lowest : highest) += reach;
  }
  const __int128 begin = static_cast<__int128>(reinterpret_cast<std::uintptr_t>(base)) + lowest * element_bytes;
  const __int128 bytes = (highest - lowest + 1) * element_bytes;
  const bool fits = begin > 0 && bytes > 0 && begin + bytes <= static_cast<__int128>(UINTPTR_MAX);
  const bool allowed = fits && GPUBROKER_SIM_LAUNCH_HAS(launch_, memory_accessible) &&
                       launch_->memory_accessible(reinterpret_cast<const void*>(static_cast<std::uintptr_t>(begin)),
                                                  static_cast<std::uint64_t>(bytes), access == Access::kWrite) != 0;
  if (!allowed) refused_ = parameter;
  return allowed;
}

int Launch::unsupported(std::string_view why) const {
  try {
    fmt::print(stderr, "sim ggml kernels: {}: {}; the launch fails (CUDA_ERROR_LAUNCH_FAILED)\n", kernel_name(), why);
  } catch (...) {  // out of memory for the message: the error code still says it
  }
  return kLaunchFailed;
}

int Launch::illegal_address() const {
  try {
    fmt::print(stderr,
               "sim ggml kernels: {}: parameter {} reaches outside the memory a kernel may touch; the launch "
               "fails (CUDA_ERROR_ILLEGAL_ADDRESS)\n",
               kernel_name(), refused_);
  } catch (...) {
  }
  return kIllegalAddress;
}

std::string Launch::kernel_name() const {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> text(abi::__cxa_demangle(launch_->kernel_name, nullptr, nullptr, &status),
                                                   &std::free);
  std::string name = status == 0 && text != nullptr ? text.get() : launch_->kernel_name;
  // "void f<...>(...)": drop the return type and the parameter list, which add nothing here.
  if (name.rfind("void ", 0) == 0) name.erase(0, 5);
  int depth = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '<') ++depth;
    if (name[i] == '>') --depth;
    if (name[i] == '(' && depth == 0) {
      name.resize(i);
      break;
    }
  }
  return name;
}

}  // namespace gpubroker::sim::ggml
