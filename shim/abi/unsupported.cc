// gpubroker_log_unsupported_once: a lock-free set of the names already logged (open addressing
// over a fixed table of pointers, sized well above the 435 exports of the largest runtime), then
// one write(2) per name.
#include "shim/abi/unsupported.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "shim/trace/recorder.h"

namespace {

constexpr std::size_t kSlots = 1024;  // a power of two, above every runtime's export count
std::atomic<const char*> logged_names[kSlots];

std::size_t name_hash(const char* name) {
  std::size_t hash = 14695981039346656037ull;  // FNV-1a
  for (const char* c = name; *c != '\0'; ++c) {
    hash = (hash ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
  }
  return hash;
}

// True for the one call that first records `name`; false for every later call with an equal name.
bool claim(const char* name) {
  std::size_t slot = name_hash(name) & (kSlots - 1);
  for (std::size_t probe = 0; probe < kSlots; ++probe, slot = (slot + 1) & (kSlots - 1)) {
    // Acquire pairs with the release of the compare_exchange that published the slot's name, so
    // that strcmp reads the characters that thread stored (string literals: always visible, but
    // the contract allows any static string).
    const char* seen = logged_names[slot].load(std::memory_order_acquire);
    if (seen == nullptr) {
      if (logged_names[slot].compare_exchange_strong(seen, name, std::memory_order_acq_rel,
                                                     std::memory_order_acquire)) {
        return true;
      }
      // Another thread took the slot first; `seen` now holds its name.
    }
    if (std::strcmp(seen, name) == 0) return false;
  }
  return false;  // Full: stay quiet rather than log the same name again and again.
}

}  // namespace

namespace {

constexpr const char* kUnsupportedLine = "gpubroker: pid %d: %s is not supported by the gpubroker %s shim; it returns %s (logged once)\n";
constexpr const char* kFailureLine = "gpubroker: pid %d: %s failed in the gpubroker %s shim: it returns %s (logged once)\n";

void write_line(const char* name, const char* library, const char* result, const char* format = kUnsupportedLine) {
  char line[256];
  int length = std::snprintf(line, sizeof line, format, static_cast<int>(getpid()), name, library, result);
  if (length <= 0) return;
  std::size_t size = std::min(static_cast<std::size_t>(length), sizeof line - 1);
  line[size - 1] = '\n';  // already there unless truncated: the line stays one whole line
  // A failed or short write to stderr is not worth reporting from here.
  [[maybe_unused]] ssize_t written = write(STDERR_FILENO, line, size);
}

}  // namespace

extern "C" void gpubroker_log_unsupported_once(const char* name) noexcept {
  if (name == nullptr || !claim(name)) return;
  write_line(name, "CUDA runtime", "cudaErrorNotSupported");
}

extern "C" void gpubroker_log_unsupported_in(const char* name, const char* library, const char* result) noexcept {
  if (name == nullptr || library == nullptr || result == nullptr || !claim(name)) return;
  write_line(name, library, result);
}

extern "C" void gpubroker_log_failure_once(const char* name, const char* library, const char* result) noexcept {
  if (name == nullptr || library == nullptr || result == nullptr || !claim(name)) return;
  write_line(name, library, result, kFailureLine);
}

extern "C" void gpubroker_trace_unsupported(const char* name, const char* library, int result) noexcept {
  using gpubroker::trace::Library;
  Library which = Library::kRuntime;
  if (library != nullptr) {
    const std::string_view named(library);
    which = named == "cuBLAS" ? Library::kCublas
            : named == "cuBLASLt" ? Library::kCublasLt
            : named == "NVML" ? Library::kNvml
                              : Library::kDriver;
  }
  gpubroker::trace::record_call(name, which, gpubroker::trace::Where::kUnsupported, gpubroker::trace::now_ns(), result);
}
