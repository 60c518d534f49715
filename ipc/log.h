// One line per event on standard error, with fmt. Thread-safe (one write per line). The level is
// process-wide and set once at start-up, by the broker from its options.
#pragma once

#include <fmt/core.h>

#include <string_view>

namespace gpubroker::ipc {

enum class LogLevel : int { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

void set_log_level(LogLevel level);
[[nodiscard]] LogLevel log_level();
void write_log_line(LogLevel level, std::string_view line);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (static_cast<int>(level) > static_cast<int>(log_level())) return;
  write_log_line(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace gpubroker::ipc
