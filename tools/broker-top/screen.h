// broker-top's screen as lines of text: the same lines go to the terminal (ncurses) and, with
// --once, to stdout. Sorting is part of the screen so that both show the same order.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "monitor/stats_reader.h"

namespace gpubroker::monitor {

// The session table's columns, in screen order.
enum class Column : int { kPid, kProgram, kAbi, kDeviceMemory, kPinned, kCallsPerSecond, kToDevice, kFromDevice,
                          kLatencyP50, kLatencyP99, kErrors, kAge, kCalls, kCount };

struct SortOrder {
  Column column = Column::kDeviceMemory;
  bool descending = true;
};

struct ScreenLine {
  enum class Style { kPlain, kTitle, kHeading, kTableHeader, kTotals, kNote } style = Style::kPlain;
  std::string text;
  // The sorted column's header, highlighted on a terminal: [begin, begin + length) of text.
  std::size_t highlight_begin = 0;
  std::size_t highlight_length = 0;
};

// The column a key selects ('m' device memory, 'c' calls/s, ...), or Column::kCount for none.
Column column_for_key(int key);
const char* column_title(Column column);
// The keys, for the help line and --help.
const char* sort_keys_help();

// What broker-top remembers of past samples, for the history lines: per device its driver-used
// memory and utilization (nullopt: the driver does not report it), and the broker's calls/s (the
// stats count calls per session, not per device). The newest sample is last; at most kSamples.
class History {
 public:
  static constexpr std::size_t kSamples = 120;  // two minutes at the default interval

  void add(const View& view);

  struct Device {
    std::deque<double> used_bytes;
    std::deque<std::optional<double>> utilization_percent;
  };
  [[nodiscard]] const std::vector<Device>& devices() const { return devices_; }
  [[nodiscard]] const std::deque<double>& calls_per_second() const { return calls_per_second_; }

 private:
  std::vector<Device> devices_;
  std::deque<double> calls_per_second_;
};

// `values` as one block character each (U+2581..U+2588), scaled to [0, `full`]; a value above
// zero shows at least the lowest block. The newest `width` values when there are more.
std::string sparkline(const std::deque<double>& values, double full, std::size_t width);

// `history`, when given, adds a history line per device under the device table.
std::vector<ScreenLine> render_screen(const View& view, const SortOrder& order, const std::string& socket_path,
                                      std::size_t width, const History* history = nullptr);

// "1.5G", "512M", "12K", "0": bytes for people.
std::string human_bytes(double bytes);
// "850ns", "12.3us", "4.1ms", "1.20s".
std::string human_latency(double ns);
// "5s", "3m12s", "2h05m", "3d04h".
std::string human_age(double seconds);

}  // namespace gpubroker::monitor
