#include "ipc/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

namespace gpubroker::ipc {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kWarning)};
constexpr const char* kLevelNames[] = {"error", "warning", "info", "debug"};
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void write_log_line(LogLevel level, std::string_view line) {
  std::string text = fmt::format("gpubroker[{}] {}: {}\n", ::getpid(), kLevelNames[static_cast<int>(level)], line);
  // One write(2) per line keeps lines from different threads and processes whole.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace gpubroker::ipc
