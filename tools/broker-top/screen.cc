#include "tools/broker-top/screen.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/format.h>
#include <functional>

#include "gpubroker/calls/protocol.h"

namespace gpubroker::monitor {

namespace {

struct ColumnSpec {
  const char* title;
  int key;
  std::size_t width;
  bool left_aligned;
};

constexpr std::array<ColumnSpec, static_cast<std::size_t>(Column::kCount)> kColumns{{
    {"PID", 'p', 8, false},
    {"PROGRAM", 'n', 16, true},
    {"ABI", 'b', 4, false},
    {"DEVMEM", 'm', 7, false},
    {"PINNED", 'i', 7, false},
    {"CALLS/S", 'c', 8, false},
    {"H2D/S", 'h', 7, false},
    {"D2H/S", 'd', 7, false},
    {"P50", '5', 8, false},
    {"P99", '9', 8, false},
    {"ERRORS", 'e', 7, false},
    {"AGE", 'a', 7, false},
    {"LAST CALL, MOST CALLED", 'l', 44, true},
}};

const ColumnSpec& spec(Column c) { return kColumns[static_cast<std::size_t>(c)]; }

std::string fit(std::string text, std::size_t width, bool left) {
  if (text.size() > width) {
    // Cut at a character boundary: never inside a UTF-8 sequence.
    std::size_t cut = width;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
    text.resize(cut);
  }
  return left ? fmt::format("{:<{}}", text, width) : fmt::format("{:>{}}", text, width);
}

std::string optional_rate(const std::optional<double>& value, bool bytes) {
  if (!value) return "-";
  return bytes ? human_bytes(*value) : (*value < 1000 ? fmt::format("{:.0f}", *value) : human_bytes(*value));
}

std::string optional_latency(const std::optional<double>& ns) { return ns ? human_latency(*ns) : "-"; }

// The session's latest request kind, then the kinds it called most in the interval with their
// share of its calls there: "Memset; LaunchKernel 71% MemcpyAsync 20%".
std::string calls_text(const SessionRow& r) {
  if (r.sample.last_kind == 0) return "-";
  std::string text = wire::kind_name(r.sample.last_kind);
  if (!r.top_kinds.empty()) text += ";";
  for (const auto& [kind, calls] : r.top_kinds) {
    text += fmt::format(" {} {:.0f}%", wire::kind_name(kind),
                        100.0 * static_cast<double>(calls) / static_cast<double>(std::max<std::uint64_t>(r.kind_calls, 1)));
  }
  return text;
}

std::string cell(const SessionRow& r, Column c) {
  const SessionSample& s = r.sample;
  switch (c) {
    case Column::kPid: return std::to_string(s.pid);
    case Column::kProgram: return printable_utf8(s.program);
    case Column::kAbi: return s.abi == 0 ? "-" : std::to_string(s.abi);
    case Column::kDeviceMemory: return human_bytes(static_cast<double>(s.device_bytes));
    case Column::kPinned: return human_bytes(static_cast<double>(s.pinned_bytes));
    case Column::kCallsPerSecond: return optional_rate(r.calls_per_second, false);
    case Column::kToDevice: return optional_rate(r.bytes_to_device_per_second, true);
    case Column::kFromDevice: return optional_rate(r.bytes_from_device_per_second, true);
    case Column::kLatencyP50: return optional_latency(r.latency_p50_ns);
    case Column::kLatencyP99: return optional_latency(r.latency_p99_ns);
    case Column::kErrors: return std::to_string(s.errors);
    case Column::kAge: return human_age(r.age_seconds);
    case Column::kCalls: return calls_text(r);
    case Column::kCount: break;
  }
  return "";
}

// The sort key of a row: numbers compare as numbers (unknown lowest), the program by name.
double numeric_key(const SessionRow& r, Column c) {
  const SessionSample& s = r.sample;
  switch (c) {
    case Column::kPid: return s.pid;
    case Column::kAbi: return s.abi;
    case Column::kDeviceMemory: return static_cast<double>(s.device_bytes);
    case Column::kPinned: return static_cast<double>(s.pinned_bytes);
    case Column::kCallsPerSecond: return r.calls_per_second.value_or(-1);
    case Column::kToDevice: return r.bytes_to_device_per_second.value_or(-1);
    case Column::kFromDevice: return r.bytes_from_device_per_second.value_or(-1);
    case Column::kLatencyP50: return r.latency_p50_ns.value_or(-1);
    case Column::kLatencyP99: return r.latency_p99_ns.value_or(-1);
    case Column::kErrors: return static_cast<double>(s.errors);
    case Column::kAge: return r.age_seconds;
    case Column::kCalls: return r.top_kinds.empty() ? 0 : static_cast<double>(r.top_kinds.front().second);
    default: return 0;
  }
}

std::string uuid_short(const std::array<std::uint8_t, 16>& u) {
  return fmt::format("GPU-{:02x}{:02x}{:02x}{:02x}", u[0], u[1], u[2], u[3]);
}

}  // namespace

Column column_for_key(int key) {
  for (std::size_t i = 0; i < kColumns.size(); ++i) {
    if (kColumns[i].key == key) return static_cast<Column>(i);
  }
  return Column::kCount;
}

const char* column_title(Column column) { return spec(column).title; }

const char* sort_keys_help() {
  return "sort: p pid  n program  b abi  m devmem  i pinned  c calls/s  h h2d/s  d d2h/s  5 p50  9 p99  e errors  a age  l most called  "
         "< > move  r reverse  q quit";
}

std::string human_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P"};
  int unit = 0;
  while (bytes >= 1024 && unit < 5) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0) return fmt::format("{:.0f}", bytes);
  return bytes < 10 ? fmt::format("{:.1f}{}", bytes, kUnits[unit]) : fmt::format("{:.0f}{}", bytes, kUnits[unit]);
}

std::string human_latency(double ns) {
  if (ns < 1e3) return fmt::format("{:.0f}ns", ns);
  if (ns < 1e6) return fmt::format("{:.1f}us", ns / 1e3);
  if (ns < 1e9) return fmt::format("{:.1f}ms", ns / 1e6);
  return fmt::format("{:.2f}s", ns / 1e9);
}

std::string human_age(double seconds) {
  const auto s = static_cast<std::uint64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

void History::add(const View& view) {
  auto push = [](auto& ring, auto value) {
    ring.push_back(value);
    if (ring.size() > kSamples) ring.pop_front();
  };
  devices_.resize(view.devices.size());
  for (std::size_t i = 0; i < view.devices.size(); ++i) {
    const DeviceSample& d = view.devices[i].sample;
    push(devices_[i].used_bytes, static_cast<double>(d.driver_used_bytes));
    push(devices_[i].utilization_percent,
         d.utilization_percent < 0 ? std::nullopt : std::optional<double>(d.utilization_percent));
  }
  if (view.totals.calls_per_second) push(calls_per_second_, *view.totals.calls_per_second);
}

std::string sparkline(const std::deque<double>& values, double full, std::size_t width) {
  static constexpr const char* kBlocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                            "\u2585", "\u2586", "\u2587", "\u2588"};
  std::string out;
  const std::size_t skip = values.size() > width ? values.size() - width : 0;
  for (std::size_t i = skip; i < values.size(); ++i) {
    const double v = values[i];
    // Zero is blank, so that "none" and "a little" (the lowest block) differ.
    const double level = full > 0 ? std::clamp(v / full, 0.0, 1.0) * 7.0 : 0.0;
    out += v > 0 ? kBlocks[static_cast<std::size_t>(std::lround(level))] : " ";
  }
  return out;
}

std::vector<ScreenLine> render_screen(const View& view, const SortOrder& order, const std::string& socket_path,
                                      std::size_t width, const History* history) {
  using Style = ScreenLine::Style;
  std::vector<ScreenLine> lines;
  auto add = [&](Style style, std::string text) {
    if (text.size() > width) text.resize(width);
    lines.push_back(ScreenLine{style, std::move(text)});
  };
  const Snapshot& s = view.snapshot;
  add(Style::kTitle, fmt::format("gpu-broker pid {} ({} driver) on {}  up {}  sessions {} open, {} since start, {} violations",
                                 s.broker_pid, s.simulated ? "sim" : "cuda", socket_path,
                                 human_age(static_cast<double>(s.taken_realtime_ns - s.started_ns) / 1e9),
                                 view.totals.sessions, s.sessions_total, s.violations_total));
  add(Style::kPlain, "");
  // USED and FREE are the driver's (cuMemGetInfo: every context and process); SESSIONS is what the
  // broker's sessions hold of it.
  add(Style::kTableHeader, fmt::format("{:>3}  {:<28} {:>8} {:>8} {:>8} {:>8} {:>5}  {}", "DEV", "NAME", "USED", "FREE",
                                       "TOTAL", "SESSIONS", "UTIL", "UUID"));
  for (const DeviceRow& d : view.devices) {
    const std::uint64_t used = d.sample.driver_used_bytes, total = d.sample.total_bytes;
    add(Style::kPlain,
        fmt::format("{:>3}  {:<28} {:>8} {:>8} {:>8} {:>8} {:>5}  {}", d.sample.index,
                    fit(printable_utf8(d.sample.name), 28, true), human_bytes(static_cast<double>(used)),
                    human_bytes(static_cast<double>(total > used ? total - used : 0)),
                    human_bytes(static_cast<double>(total)), human_bytes(static_cast<double>(d.sample.used_bytes)),
                    d.sample.utilization_percent < 0 ? std::string("-") : fmt::format("{}%", d.sample.utilization_percent),
                    uuid_short(d.sample.uuid)));
  }
  if (history != nullptr && !history->devices().empty()) {
    // The sparklines fill what the label leaves of the width (one column per sample).
    constexpr std::size_t kLabel = 22;
    const std::size_t columns = width > kLabel + 12 ? width - kLabel - 12 : 1;
    add(Style::kPlain, "");
    for (std::size_t i = 0; i < history->devices().size() && i < view.devices.size(); ++i) {
      const History::Device& h = history->devices()[i];
      const double total = static_cast<double>(view.devices[i].sample.total_bytes);
      add(Style::kPlain, fmt::format("{:>3}  {:<17}{} {}", i, "mem used", sparkline(h.used_bytes, total, columns),
                                     human_bytes(h.used_bytes.empty() ? 0.0 : h.used_bytes.back())));
      std::deque<double> utilization;
      for (const auto& u : h.utilization_percent) {
        if (u) utilization.push_back(*u);
      }
      add(Style::kPlain, fmt::format("{:>3}  {:<17}{}", i, "utilization",
                                     utilization.empty() ? std::string("n/a (the driver does not report it)")
                                                         : sparkline(utilization, 100.0, columns) +
                                                               fmt::format(" {:.0f}%", utilization.back())));
    }
    const std::deque<double>& calls = history->calls_per_second();
    const double peak = calls.empty() ? 0.0 : *std::max_element(calls.begin(), calls.end());
    add(Style::kPlain, fmt::format("{:>3}  {:<17}{} {} (peak {})", "all", "calls/s", sparkline(calls, peak, columns),
                                   optional_rate(calls.empty() ? std::nullopt : std::optional<double>(calls.back()), false),
                                   optional_rate(peak, false)));
  }
  add(Style::kPlain, "");

  // The program column takes what the width leaves, at least its default.
  std::size_t fixed = 0;
  for (const ColumnSpec& c : kColumns) fixed += c.width + 1;
  const std::size_t program_width =
      std::max<std::size_t>(spec(Column::kProgram).width, width > fixed ? spec(Column::kProgram).width + (width - fixed) : 0);
  auto column_width = [&](Column c) { return c == Column::kProgram ? std::min<std::size_t>(program_width, 40) : spec(c).width; };

  ScreenLine header{Style::kTableHeader, ""};
  for (std::size_t i = 0; i < kColumns.size(); ++i) {
    const auto c = static_cast<Column>(i);
    std::string title = kColumns[i].title;
    if (c == order.column) title = (order.descending ? "v" : "^") + title;
    if (c == order.column) header.highlight_begin = header.text.size();
    header.text += fit(title, column_width(c), kColumns[i].left_aligned);
    if (c == order.column) header.highlight_length = column_width(c);
    header.text += ' ';
  }
  if (header.text.size() > width) header.text.resize(width);
  lines.push_back(header);

  std::vector<const SessionRow*> rows;
  for (const SessionRow& r : view.sessions) rows.push_back(&r);
  std::stable_sort(rows.begin(), rows.end(), [&](const SessionRow* a, const SessionRow* b) {
    if (order.column == Column::kProgram) {
      return order.descending ? a->sample.program > b->sample.program : a->sample.program < b->sample.program;
    }
    const double x = numeric_key(*a, order.column), y = numeric_key(*b, order.column);
    return order.descending ? x > y : x < y;
  });
  auto row_text = [&](const std::function<std::string(Column)>& value) {
    std::string text;
    for (std::size_t i = 0; i < kColumns.size(); ++i) {
      const auto c = static_cast<Column>(i);
      text += fit(value(c), column_width(c), kColumns[i].left_aligned) + ' ';
    }
    return text;
  };
  for (const SessionRow* r : rows) add(Style::kPlain, row_text([&](Column c) { return cell(*r, c); }));
  if (view.others) {
    // The sessions past the stats file's slots, summed (wire::OtherSessions).
    const std::uint64_t others = view.snapshot.other_sessions;
    add(Style::kPlain, row_text([&](Column c) -> std::string {
          switch (c) {
            case Column::kPid: return "OTHERS";
            case Column::kProgram: return fmt::format("{} more session{}", others, others == 1 ? "" : "s");
            case Column::kAbi: case Column::kLatencyP50: case Column::kLatencyP99: case Column::kAge: return "";
            default: return cell(*view.others, c);
          }
        }));
  }
  if (rows.empty() && !view.others) add(Style::kNote, "(no sessions)");

  const Totals& t = view.totals;
  add(Style::kTotals, row_text([&](Column c) -> std::string {
        switch (c) {
          case Column::kPid: return "TOTAL";
          case Column::kProgram: return fmt::format("{} session{}", t.sessions, t.sessions == 1 ? "" : "s");
          case Column::kDeviceMemory: return human_bytes(static_cast<double>(t.device_bytes));
          case Column::kPinned: return human_bytes(static_cast<double>(t.pinned_bytes));
          case Column::kCallsPerSecond: return optional_rate(t.calls_per_second, false);
          case Column::kToDevice: return optional_rate(t.bytes_to_device_per_second, true);
          case Column::kFromDevice: return optional_rate(t.bytes_from_device_per_second, true);
          case Column::kErrors: return std::to_string(t.errors);
          default: return "";
        }
      }));
  return lines;
}

}  // namespace gpubroker::monitor
