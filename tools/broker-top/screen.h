// broker-top's screen as lines of text: the same lines go to the terminal (ncurses) and, with
// --once, to stdout. Sorting is part of the screen so that both show the same order.
#pragma once

#include <string>
#include <vector>

#include "monitor/stats_reader.h"

namespace gpubroker::monitor {

// The session table's columns, in screen order.
enum class Column : int { kPid, kProgram, kAbi, kDeviceMemory, kPinned, kCallsPerSecond, kToDevice, kFromDevice,
                          kLatencyP50, kLatencyP99, kErrors, kAge, kCount };

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

std::vector<ScreenLine> render_screen(const View& view, const SortOrder& order, const std::string& socket_path,
                                      std::size_t width);

// "1.5G", "512M", "12K", "0": bytes for people.
std::string human_bytes(double bytes);
// "850ns", "12.3us", "4.1ms", "1.20s".
std::string human_latency(double ns);
// "5s", "3m12s", "2h05m", "3d04h".
std::string human_age(double seconds);

}  // namespace gpubroker::monitor
