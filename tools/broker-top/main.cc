// broker-top: a live view of a gpu-broker — its devices, its sessions (who holds what, how fast
// they call, how long the broker takes) and the totals — read from the broker's stats file
// (`<socket>.stats`), which it maps read-only. It never talks to the broker, so it cannot slow
// it down; it leaves when the broker does (stats file removed, or no heartbeat for 3 s).
//
//   broker-top [--socket=PATH] [--interval=SECONDS] [--sort=KEY]   the live screen (ncurses)
//   broker-top --once                                              one screen as text
//   broker-top --json                                              one JSON object
#include <curses.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <clocale>
#include <chrono>
#include <cstdio>
#include <fmt/core.h>
#include <optional>
#include <string>
#include <thread>

#include "monitor/stats_reader.h"
#include "tools/broker-top/screen.h"

namespace {

using namespace gpubroker::monitor;

std::atomic<bool> g_stop{false};
void on_stop_signal(int) { g_stop.store(true); }

const char* kUsage =
    "usage: broker-top [--socket=PATH] [--interval=SECONDS] [--sort=KEY] [--once | --json]\n"
    "\n"
    "A live view of a gpu-broker's devices and sessions, from its stats file (<socket>.stats).\n"
    "\n"
    "  --socket=PATH       the broker's socket (default: $GPUBROKER_SOCKET, else your own broker's\n"
    "                      default socket if it exists, else /run/gpu-broker/broker.sock)\n"
    "  --interval=SECONDS  time between refreshes, 0.1 to 1 (default 1)\n"
    "  --sort=KEY          initial sort column, by its key (below; default m, device memory)\n"
    "  --once              print one screen as text and exit (rates over one interval)\n"
    "  --json              print one JSON object and exit (rates over one interval)\n"
    "\n"
    "Keys on the live screen:\n  ";

struct Options {
  std::string socket_path;
  double interval_seconds = 1.0;
  SortOrder order;
  bool once = false;
  bool json = false;
};

std::string rtrim(std::string text) {
  text.erase(text.find_last_not_of(' ') + 1);
  return text;
}

std::optional<StatsFile> open_stats(const std::string& path) {
  // A broker that is starting has created the file but not its header yet: give it a moment.
  for (int attempt = 0;; ++attempt) {
    auto opened = StatsFile::open(path);
    if (opened) return std::move(opened.value());
    if (opened.error().code == StatsErrc::kStarting && attempt < 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    fmt::print(stderr, "broker-top: {}\n", opened.error().message);
    if (opened.error().code == StatsErrc::kMissing) {
      fmt::print(stderr,
                 "broker-top: is gpu-broker running? Start it with `systemctl start gpu-broker`, or "
                 "`gpu-broker --driver=sim --socket=PATH` for a test broker, or name its socket with --socket=PATH.\n");
    }
    return std::nullopt;
  }
}

// Why the broker is gone, for the goodbye line; "" while it lives.
std::string gone_reason(BrokerState state) {
  switch (state) {
    case BrokerState::kLive: return "";
    case BrokerState::kStopped: return "the broker has stopped (its stats file was removed)";
    case BrokerState::kReplaced: return "the broker was restarted (a new stats file replaced the one watched)";
    case BrokerState::kSilent: return "the broker is not responding (no heartbeat for 3 s; killed or hung)";
  }
  return "";
}

int print_once(const Options& options, const std::string& stats_path) {
  auto stats = open_stats(stats_path);
  if (!stats) return 1;
  const Snapshot first = stats->read();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.interval_seconds));
  const Snapshot second = stats->read();
  if (const std::string reason = gone_reason(stats->broker_state(second)); !reason.empty()) {
    fmt::print(stderr, "broker-top: {}\n", reason);
    return 1;
  }
  const View view = derive(&first, second);
  if (options.json) {
    fmt::print("{}\n", to_json(view, options.socket_path));
  } else {
    for (const ScreenLine& line : render_screen(view, options.order, options.socket_path, 160)) {
      fmt::print("{}\n", rtrim(line.text));
    }
  }
  return 0;
}

int attribute_of(ScreenLine::Style style) {
  switch (style) {
    case ScreenLine::Style::kTitle: return A_BOLD;
    case ScreenLine::Style::kTableHeader: return A_REVERSE;
    case ScreenLine::Style::kTotals: return A_BOLD;
    case ScreenLine::Style::kNote: return A_DIM;
    default: return A_NORMAL;
  }
}

void draw(const View& view, const Options& options, const History& history) {
  erase();
  const int rows = LINES, columns = COLS;
  const auto lines =
      render_screen(view, options.order, options.socket_path, static_cast<std::size_t>(std::max(columns, 1)), &history);
  int y = 0;
  for (const ScreenLine& line : lines) {
    if (y >= rows - 1) break;
    attrset(attribute_of(line.style));
    mvaddnstr(y, 0, line.text.c_str(), columns);
    if (line.highlight_length > 0 && static_cast<int>(line.highlight_begin) < columns) {
      // The sorted column stands out from the rest of the header.
      attrset(A_BOLD);
      mvaddnstr(y, static_cast<int>(line.highlight_begin), line.text.c_str() + line.highlight_begin,
                std::min<int>(static_cast<int>(line.highlight_length), columns - static_cast<int>(line.highlight_begin)));
    }
    ++y;
  }
  attrset(A_DIM);
  mvaddnstr(rows - 1, 0, sort_keys_help(), columns);
  attrset(A_NORMAL);
  refresh();
}

// Applies one key to the sort order; false for quit.
bool handle_key(int key, SortOrder& order) {
  const int count = static_cast<int>(Column::kCount);
  if (key == 'q' || key == 'Q' || key == 27) return false;
  if (key == 'r') {
    order.descending = !order.descending;
  } else if (key == '<' || key == KEY_LEFT) {
    order.column = static_cast<Column>((static_cast<int>(order.column) + count - 1) % count);
  } else if (key == '>' || key == KEY_RIGHT) {
    order.column = static_cast<Column>((static_cast<int>(order.column) + 1) % count);
  } else if (const Column c = column_for_key(key); c != Column::kCount) {
    // Choosing the sorted column again reverses it, as in top.
    if (c == order.column) order.descending = !order.descending;
    else order.column = c;
  }
  return true;
}

int run_live(Options options, const std::string& stats_path) {
  auto stats = open_stats(stats_path);
  if (!stats) return 1;
  struct sigaction action{};
  action.sa_handler = on_stop_signal;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGHUP, &action, nullptr);

  std::setlocale(LC_ALL, "");  // program names may be UTF-8
  initscr();
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  timeout(50);  // getch waits at most this long, so samples stay on time

  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.interval_seconds));
  std::optional<Snapshot> previous;
  std::optional<View> view;
  History history;  // this screen's samples, for the history lines
  auto next_sample = Clock::now();
  std::string goodbye;
  while (!g_stop.load()) {
    if (Clock::now() >= next_sample) {
      Snapshot current = stats->read();
      if (goodbye = gone_reason(stats->broker_state(current)); !goodbye.empty()) break;
      view = derive(previous ? &*previous : nullptr, current);
      history.add(*view);
      previous = std::move(current);
      next_sample += interval;
      if (next_sample < Clock::now()) next_sample = Clock::now() + interval;
      draw(*view, options, history);
    }
    const int key = getch();
    if (key == ERR) continue;
    if (key == KEY_RESIZE) {
      if (view) draw(*view, options, history);
      continue;
    }
    if (!handle_key(key, options.order)) break;
    if (view) draw(*view, options, history);
  }
  endwin();
  if (!goodbye.empty()) {
    fmt::print("broker-top: {}\n", goodbye);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value_of = [&](const char* prefix) -> std::optional<std::string> {
      const std::string p = prefix;
      if (arg.rfind(p, 0) == 0) return arg.substr(p.size());
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}{}\n", kUsage, sort_keys_help());
      return 0;
    } else if (arg == "--once") {
      options.once = true;
    } else if (arg == "--json") {
      options.json = true;
    } else if (auto socket = value_of("--socket=")) {
      options.socket_path = *socket;
    } else if (auto interval = value_of("--interval=")) {
      double seconds = 0;
      auto [end, ec] = std::from_chars(interval->data(), interval->data() + interval->size(), seconds);
      if (ec != std::errc() || end != interval->data() + interval->size() || seconds < 0.1 || seconds > 1.0) {
        fmt::print(stderr, "broker-top: --interval takes seconds from 0.1 to 1, not '{}'\n", *interval);
        return 2;
      }
      options.interval_seconds = seconds;
    } else if (auto sort = value_of("--sort=")) {
      const Column c = sort->size() == 1 ? column_for_key((*sort)[0]) : Column::kCount;
      if (c == Column::kCount) {
        fmt::print(stderr, "broker-top: --sort takes one of the keys in --help, not '{}'\n", *sort);
        return 2;
      }
      options.order.column = c;
      options.order.descending = c != Column::kPid && c != Column::kProgram;
    } else {
      fmt::print(stderr, "broker-top: unknown argument '{}'\n{}{}\n", arg, kUsage, sort_keys_help());
      return 2;
    }
  }
  if (options.socket_path.empty()) options.socket_path = socket_to_watch();
  const std::string stats_path = stats_path_for(options.socket_path);
  if (options.once || options.json) return print_once(options, stats_path);
  if (::isatty(STDOUT_FILENO) == 0) {
    fmt::print(stderr, "broker-top: stdout is not a terminal; use --once or --json\n");
    return 2;
  }
  return run_live(options, stats_path);
}
