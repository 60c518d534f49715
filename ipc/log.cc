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
  std::string text = fmt::format("gpubroker[{}] {}: ", ::getpid(), kLevelNames[static_cast<int>(level)]);
  // Lines carry what clients sent (program names, kernel names from their images): a control
  // character is written as \xNN, so that no client can end a line early, forge another one or
  // send escape sequences to whoever reads the log.
  for (const char c : line) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t') || byte == 0x7f) {
      text += fmt::format("\\x{:02x}", byte);
    } else {
      text += c;
    }
  }
  text += '\n';
  // One write(2) per line keeps lines from different threads and processes whole.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace gpubroker::ipc
