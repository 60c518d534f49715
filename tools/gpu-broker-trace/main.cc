// gpu-broker-trace: reads the call trace a shim wrote (GPUBROKER_TRACE=FILE, or gpu-broker-run
// --trace=FILE, makes FILE.<pid> per process; docs/trace.md) and prints it.
//
//   gpu-broker-trace FILE.<pid>...            one line per call, like strace
//   gpu-broker-trace --summary FILE.<pid>...  a table per function: count, errors, total, p50, p99
//   gpu-broker-trace --chrome FILE.<pid>...   Chrome trace event JSON (Perfetto, chrome://tracing)
//
// A FILE without a .<pid> file of its own stands for every FILE.<pid> beside it.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/core.h>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/trace/format.h"

namespace fs = std::filesystem;
namespace trace = gpubroker::trace;

namespace {

constexpr int kExitUsage = 2;

const char* kUsage =
    "usage: gpu-broker-trace [--summary | --chrome] FILE...\n"
    "\n"
    "Prints the CUDA calls recorded by gpu-broker-run --trace=FILE (each process writes FILE.<pid>;\n"
    "naming FILE reads every FILE.<pid>).\n"
    "\n"
    "  (default)   one line per call: [pid tid] +start name(args) = result <where duration>\n"
    "  --summary   per function: calls, errors, total, p50 and p99 time; unsupported functions first\n"
    "  --chrome    Chrome trace event JSON, to open in Perfetto (ui.perfetto.dev) or chrome://tracing\n";

struct Process {
  trace::FileHeader header{};
  std::vector<trace::Record> records;  // in file order: each thread's in its order
};

// Reads one trace file; nullopt (with a message) when it is not one.
std::optional<Process> read_trace(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  Process process;
  if (!in.read(reinterpret_cast<char*>(&process.header), sizeof process.header) ||
      std::memcmp(process.header.magic, trace::kMagic, sizeof trace::kMagic) != 0) {
    fmt::print(stderr, "gpu-broker-trace: {} is not a gpubroker call trace\n", path.string());
    return std::nullopt;
  }
  if (process.header.version != trace::kVersion || process.header.record_bytes != sizeof(trace::Record)) {
    fmt::print(stderr, "gpu-broker-trace: {} is a trace of version {} with {}-byte records; this reads version {} ({} bytes)\n",
               path.string(), process.header.version, process.header.record_bytes, trace::kVersion, sizeof(trace::Record));
    return std::nullopt;
  }
  trace::Record record{};
  // A record cut short (a process killed mid-write) ends the file: it is dropped.
  while (in.read(reinterpret_cast<char*>(&record), sizeof record)) {
    record.function[sizeof record.function - 1] = '\0';
    process.records.push_back(record);
  }
  std::stable_sort(process.records.begin(), process.records.end(),
                   [](const trace::Record& a, const trace::Record& b) { return a.start_ns < b.start_ns; });
  return process;
}

// FILE itself when it exists, else every FILE.<pid> beside it, in pid order.
std::vector<fs::path> files_of(const std::string& name) {
  if (fs::is_regular_file(name)) return {fs::path(name)};
  std::vector<std::pair<long, fs::path>> found;
  const fs::path prefix(name);
  const fs::path dir = prefix.has_parent_path() ? prefix.parent_path() : fs::path(".");
  const std::string stem = prefix.filename().string() + ".";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(stem, 0) != 0) continue;
    const std::string pid = file.substr(stem.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stol(pid), entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> paths;
  for (auto& [pid, path] : found) paths.push_back(path);
  return paths;
}

const char* library_name(trace::Library library) {
  switch (library) {
    case trace::Library::kRuntime: return "cudart";
    case trace::Library::kDriver: return "cuda";
    case trace::Library::kCublas: return "cublas";
    case trace::Library::kCublasLt: return "cublasLt";
    case trace::Library::kNvml: return "nvml";
    case trace::Library::kRequest: return "request";
  }
  return "?";
}

const char* where_name(trace::Where where) {
  switch (where) {
    case trace::Where::kLocal: return "local";
    case trace::Where::kBroker: return "broker";
    case trace::Where::kUnsupported: return "unsupported";
  }
  return "?";
}

std::string duration_text(std::uint64_t ns) {
  if (ns < 10'000) return fmt::format("{:.1f}us", static_cast<double>(ns) / 1e3);
  if (ns < 10'000'000) return fmt::format("{:.0f}us", static_cast<double>(ns) / 1e3);
  return fmt::format("{:.1f}ms", static_cast<double>(ns) / 1e6);
}

// The call's identifying words: the request the broker got (its kind and its payload's first
// words), for a call that sent one.
std::string arguments_text(const trace::Record& r) {
  if (r.where != trace::Where::kBroker) return "";
  const char* kind = gpubroker::wire::kind_name(r.kind);
  return fmt::format("{}: {:#x}, {:#x}, {:#x}, {:#x}", kind, r.args[0], r.args[1], r.args[2], r.args[3]);
}

// Calls at the margin, with the first request each sent (folded into its record by the shim);
// further requests of a call are printed under it, indented.
void print_lines(const std::vector<Process>& processes) {
  for (const Process& p : processes) {
    for (const trace::Record& r : p.records) {
      const bool request = r.library == trace::Library::kRequest;
      fmt::print("[{} {}] +{:.3f}ms {}{}{}({}) = {} <{} {}>\n", p.header.pid, r.tid,
                 static_cast<double>(r.start_ns - p.header.start_ns) / 1e6, request ? "  -> " : "",
                 request ? "" : fmt::format("{}:", library_name(r.library)), r.function,
                 request ? fmt::format("{:#x}, {:#x}, {:#x}, {:#x}", r.args[0], r.args[1], r.args[2], r.args[3])
                         : arguments_text(r),
                 r.result, where_name(r.where), duration_text(r.duration_ns));
    }
  }
}

struct FunctionStats {
  std::string name;
  bool unsupported = false;
  std::uint64_t first_ns = 0;  // when it was first called, to order unsupported functions
  std::uint64_t errors = 0;
  std::vector<std::uint64_t> durations;
};

std::uint64_t percentile(std::vector<std::uint64_t>& sorted, double q) {
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * static_cast<double>(sorted.size())))];
}

// One row per entry point (requests are counted by the entry points that sent them); the
// unsupported functions first, the first one called at the top, then the rest by total time.
void print_summary(const std::vector<Process>& processes) {
  std::map<std::string, FunctionStats> by_name;
  for (const Process& p : processes) {
    for (const trace::Record& r : p.records) {
      if (r.library == trace::Library::kRequest) continue;
      const std::string name = fmt::format("{}:{}", library_name(r.library), r.function);
      FunctionStats& s = by_name[name];
      if (s.durations.empty()) {
        s.name = name;
        s.first_ns = r.start_ns;
      }
      s.unsupported |= r.where == trace::Where::kUnsupported;
      s.errors += r.result != 0;
      s.durations.push_back(r.duration_ns);
    }
  }
  std::vector<FunctionStats> rows;
  for (auto& [name, stats] : by_name) rows.push_back(std::move(stats));
  for (FunctionStats& s : rows) std::sort(s.durations.begin(), s.durations.end());
  auto total = [](const FunctionStats& s) {
    std::uint64_t sum = 0;
    for (std::uint64_t d : s.durations) sum += d;
    return sum;
  };
  std::sort(rows.begin(), rows.end(), [&](const FunctionStats& a, const FunctionStats& b) {
    if (a.unsupported != b.unsupported) return a.unsupported;
    if (a.unsupported) return a.first_ns < b.first_ns;
    return total(a) > total(b);
  });
  fmt::print("{:<44} {:>8} {:>7} {:>10} {:>9} {:>9}\n", "function", "calls", "errors", "total", "p50", "p99");
  for (FunctionStats& s : rows) {
    fmt::print("{:<44} {:>8} {:>7} {:>10} {:>9} {:>9}{}\n", s.name, s.durations.size(), s.errors,
               duration_text(total(s)), duration_text(percentile(s.durations, 0.5)),
               duration_text(percentile(s.durations, 0.99)), s.unsupported ? "  UNSUPPORTED" : "");
  }
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

// Chrome trace event format: "X" (complete) events per call, on a track per process and thread,
// with the requests nested under their entry points; "M" events naming processes and threads;
// "i" markers for the process's start, its first call and its first kernel launch. Times in us
// from the earliest process start.
void print_chrome(const std::vector<Process>& processes) {
  std::uint64_t origin = UINT64_MAX;
  for (const Process& p : processes) origin = std::min(origin, p.header.start_ns);
  auto us = [&](std::uint64_t ns) { return fmt::format("{:.3f}", static_cast<double>(ns - origin) / 1e3); };
  std::vector<std::string> events;
  for (const Process& p : processes) {
    const int pid = p.header.pid;
    events.push_back(fmt::format(R"({{"name":"process_name","ph":"M","pid":{},"tid":{},"args":{{"name":"pid {}"}}}})", pid, pid, pid));
    events.push_back(fmt::format(R"({{"name":"process start","ph":"i","s":"p","ts":{},"pid":{},"tid":{}}})", us(p.header.start_ns), pid, pid));
    std::vector<std::uint32_t> threads;
    bool first_call = true, first_kernel = true;
    for (const trace::Record& r : p.records) {
      if (std::find(threads.begin(), threads.end(), r.tid) == threads.end()) {
        threads.push_back(r.tid);
        events.push_back(fmt::format(R"({{"name":"thread_name","ph":"M","pid":{},"tid":{},"args":{{"name":"thread {}"}}}})", pid, r.tid, r.tid));
      }
      const bool request = r.library == trace::Library::kRequest;
      if (first_call && !request) {
        first_call = false;
        events.push_back(fmt::format(R"({{"name":"first call: {}","ph":"i","s":"t","ts":{},"pid":{},"tid":{}}})", r.function, us(r.start_ns), pid, r.tid));
      }
      // A launch is a request record of its own, or the first request of the call that sent it.
      const char* sent = request ? r.function
                         : r.where == trace::Where::kBroker ? gpubroker::wire::kind_name(r.kind)
                                                                            : "";
      if (first_kernel && std::strstr(sent, "Launch") != nullptr) {
        first_kernel = false;
        events.push_back(fmt::format(R"({{"name":"first kernel launch","ph":"i","s":"p","ts":{},"pid":{},"tid":{}}})", us(r.start_ns), pid, r.tid));
      }
      events.push_back(fmt::format(R"({{"name":{},"cat":"{}","ph":"X","ts":{},"dur":{:.3f},"pid":{},"tid":{},"args":{{"result":{},"where":"{}"}}}})",
                                   json_string(r.function), library_name(r.library), us(r.start_ns),
                                   static_cast<double>(r.duration_ns) / 1e3, pid, r.tid, r.result, where_name(r.where)));
    }
  }
  fmt::print("{{\"traceEvents\":[\n");
  for (std::size_t i = 0; i < events.size(); ++i) fmt::print("{}{}\n", events[i], i + 1 < events.size() ? "," : "");
  fmt::print("],\"displayTimeUnit\":\"ms\"}}\n");
}

}  // namespace

int main(int argc, char** argv) {
  enum class Mode { kLines, kSummary, kChrome } mode = Mode::kLines;
  std::vector<fs::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--summary") {
      mode = Mode::kSummary;
    } else if (arg == "--chrome") {
      mode = Mode::kChrome;
    } else if (arg.rfind("--", 0) == 0) {
      fmt::print(stderr, "gpu-broker-trace: unknown option '{}'\n{}", arg, kUsage);
      return kExitUsage;
    } else {
      const std::vector<fs::path> found = files_of(arg);
      if (found.empty()) {
        fmt::print(stderr, "gpu-broker-trace: no trace {} (nor {}.<pid>)\n", arg, arg);
        return 1;
      }
      paths.insert(paths.end(), found.begin(), found.end());
    }
  }
  if (paths.empty()) {
    fmt::print(stderr, "gpu-broker-trace: no trace named\n{}", kUsage);
    return kExitUsage;
  }
  std::vector<Process> processes;
  for (const fs::path& path : paths) {
    auto process = read_trace(path);
    if (!process) return 1;
    processes.push_back(std::move(*process));
  }
  switch (mode) {
    case Mode::kLines: print_lines(processes); break;
    case Mode::kSummary: print_summary(processes); break;
    case Mode::kChrome: print_chrome(processes); break;
  }
  return 0;
}
