// gpu-broker-trace: reads the call trace a shim wrote (GPUBROKER_TRACE=FILE, or gpu-broker-run
// --trace=FILE, makes FILE.<pid> per process; docs/trace.md) and prints it.
//
//   gpu-broker-trace FILE.<pid>...            one line per call, like strace
//   gpu-broker-trace --summary FILE.<pid>...  a table per function: count, errors, total, p50, p99
//   gpu-broker-trace --chrome FILE.<pid>...   Chrome trace event JSON (Perfetto, chrome://tracing)
//   gpu-broker-trace --svg FILE.<pid>...      a picture of the timeline, one row per thread and stream
//
// A FILE without a .<pid> file of its own stands for every FILE.<pid> beside it.
#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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
    "usage: gpu-broker-trace [--summary | --chrome | --svg] FILE...\n"
    "\n"
    "Prints the CUDA calls recorded by gpu-broker-run --trace=FILE (each process writes FILE.<pid>;\n"
    "naming FILE reads every FILE.<pid>).\n"
    "\n"
    "  (default)   one line per call: [pid tid] +start name(args) = result <where duration>\n"
    "  --summary   per function: calls, errors, total, p50 and p99 time; unsupported functions first\n"
    "  --chrome    Chrome trace event JSON, to open in Perfetto (ui.perfetto.dev) or chrome://tracing\n"
    "  --svg       an SVG picture of the timeline: a row per thread's calls and per stream's device work\n"
    "\n"
    "Device work (kernels, copies, memsets, graphs, GEMMs) is timed by the broker on the device and\n"
    "shown per stream, beside the calls that queued it.\n";

struct Process {
  trace::FileHeader header{};
  std::vector<trace::Record> records;  // calls, requests and device work, by start time
  std::map<std::uint64_t, std::string> kernels;  // function id -> name, demangled (kName records)
};

bool is_device(const trace::Record& r) { return r.library == trace::Library::kDevice; }
bool is_end_marker(const trace::Record& r) { return is_device(r) && std::strcmp(r.function, "session end") == 0; }

// A C++ kernel's name as it reads in source ("mul_mat_vec<float>(...)"); a C name as it is.
std::string demangled(const std::string& name) {
  int status = 0;
  char* text = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  if (status != 0 || text == nullptr) return name;
  std::string readable(text);
  std::free(text);
  return readable;
}

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
    if (record.library == trace::Library::kName) {
      if (record.args[1] > trace::kMaxNameBytes) {
        fmt::print(stderr, "gpu-broker-trace: {}: a name of {} bytes; the file is damaged\n", path.string(), record.args[1]);
        return std::nullopt;
      }
      std::string name(trace::padded_name_bytes(record.args[1]), '\0');
      if (!in.read(name.data(), static_cast<std::streamsize>(name.size()))) break;
      name.resize(record.args[1]);
      process.kernels[record.args[0]] = demangled(name.c_str());
      continue;
    }
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
    case trace::Library::kDevice: return "device";
    case trace::Library::kName: return "name";
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

template <class Payload>
Payload payload_of(const trace::Record& r) {
  Payload p{};
  std::memcpy(&p, r.args, std::min(sizeof p, sizeof r.args));
  return p;
}

std::string kernel_name(const Process& p, std::uint64_t function) {
  auto it = p.kernels.find(function);
  return it != p.kernels.end() ? it->second : fmt::format("function {:#x}", function);
}

std::string stream_name(std::uint64_t stream) {
  return stream <= 2 ? std::string("default stream") : fmt::format("stream {}", stream);
}

std::string bytes_text(std::uint64_t bytes) {
  if (bytes < 10 * 1024) return fmt::format("{} B", bytes);
  if (bytes < 10 * 1024 * 1024) return fmt::format("{} KiB", bytes / 1024);
  return fmt::format("{} MiB", bytes / (1024 * 1024));
}

std::string dims_text(std::uint32_t x, std::uint32_t y, std::uint32_t z) { return fmt::format("({},{},{})", x, y, z); }

// What a request's first words say, by its kind (the payload structs of gpubroker/calls); the
// words as numbers for a kind without a decoding here.
std::string request_text(const Process& p, std::uint16_t kind, const trace::Record& r) {
  using K = gpubroker::wire::RequestKind;
  namespace wire = gpubroker::wire;
  switch (static_cast<K>(kind)) {
    case K::kLaunchKernel:
    case K::kLaunchKernelStaged: {
      // The launch's first 32 bytes: the function id, grid[3], block[3].
      const auto l = payload_of<wire::LaunchRequest>(r);
      return fmt::format("{}<<<{}, {}>>>", kernel_name(p, l.function), dims_text(l.grid[0], l.grid[1], l.grid[2]),
                         dims_text(l.block[0], l.block[1], l.block[2]));
    }
    case K::kCopyHostToDevice:
    case K::kCopyDeviceToHost:
    case K::kCopyDeviceToDevice:
    case K::kCopyArenaToDevice:
    case K::kCopyDeviceToArena: {
      const auto c = payload_of<wire::CopyRequest>(r);
      return fmt::format("{:#x} <- {:#x}, {}, {}", c.destination, c.source, bytes_text(c.bytes), stream_name(c.stream));
    }
    case K::kMemset: {
      const auto m = payload_of<wire::MemsetRequest>(r);
      return fmt::format("{:#x}, value {:#x}, {}, {}", m.pointer, m.value, bytes_text(m.bytes), stream_name(m.stream));
    }
    case K::kMemAlloc: {
      const auto a = payload_of<wire::MemAllocRequest>(r);
      return fmt::format("device {}, {}", a.device, bytes_text(a.bytes));
    }
    case K::kMemFree: return fmt::format("{:#x}", r.args[0]);
    case K::kGraphLaunch: return fmt::format("graph {}, {}", r.args[0], stream_name(r.args[1]));
    case K::kStreamSynchronize:
    case K::kStreamQuery:
    case K::kStreamDestroy: return stream_name(r.args[0]);
    case K::kEventRecord:
    case K::kStreamWaitEvent: return fmt::format("event {}, {}", r.args[0], stream_name(r.args[1]));
    default: return fmt::format("{:#x}, {:#x}, {:#x}, {:#x}", r.args[0], r.args[1], r.args[2], r.args[3]);
  }
}

// The device work a kDevice record times: what ran and on which stream.
std::string device_text(const Process& p, const trace::Record& r) {
  const std::string on = stream_name(r.args[0]);
  if (std::strcmp(r.function, "kernel") == 0) {
    return fmt::format("{}<<<{}, {}>>> on {}", kernel_name(p, r.args[1]),
                       dims_text(trace::dim_x(r.args[2]), trace::dim_y(r.args[2]), trace::dim_z(r.args[2])),
                       dims_text(trace::dim_x(r.args[3]), trace::dim_y(r.args[3]), trace::dim_z(r.args[3])), on);
  }
  if (std::strncmp(r.function, "mem", 3) == 0) return fmt::format("{} on {}", bytes_text(r.args[1]), on);
  if (std::strcmp(r.function, "gemm") == 0) return fmt::format("m {} n {} k {} on {}", r.args[1], r.args[2], r.args[3], on);
  if (std::strcmp(r.function, "graph") == 0) return fmt::format("graph {} on {}", r.args[1], on);
  if (std::strcmp(r.function, "host function") == 0) return fmt::format("function {} on {}", r.args[1], on);
  return on;
}

// The name a record goes by in the summary and the timeline: a kernel by its own name.
std::string label_of(const Process& p, const trace::Record& r) {
  if (is_device(r) && std::strcmp(r.function, "kernel") == 0) return kernel_name(p, r.args[1]);
  return r.function;
}

// The call's identifying words: the request the broker got (its kind and what its payload's
// first words say), for a call that sent one.
std::string arguments_text(const Process& p, const trace::Record& r) {
  if (r.where != trace::Where::kBroker) return "";
  return fmt::format("{}: {}", gpubroker::wire::kind_name(r.kind), request_text(p, r.kind, r));
}

// Calls at the margin, with the first request each sent (folded into its record by the shim);
// further requests of a call are printed under it, indented; device work is at the margin too,
// under "dev", at the time it ran on the device.
void print_lines(const std::vector<Process>& processes) {
  for (const Process& p : processes) {
    for (const trace::Record& r : p.records) {
      const double at_ms = static_cast<double>(static_cast<std::int64_t>(r.start_ns - p.header.start_ns)) / 1e6;
      if (is_device(r)) {
        if (is_end_marker(r)) {
          fmt::print("[{} dev] +{:.3f}ms session end\n", p.header.pid, at_ms);
        } else {
          fmt::print("[{} dev] +{:.3f}ms device:{} {} = {} <{}>\n", p.header.pid, at_ms, r.function, device_text(p, r),
                     r.result, duration_text(r.duration_ns));
        }
        continue;
      }
      const bool request = r.library == trace::Library::kRequest;
      fmt::print("[{} {}] +{:.3f}ms {}{}{}({}) = {} <{} {}>\n", p.header.pid, r.tid, at_ms, request ? "  -> " : "",
                 request ? "" : fmt::format("{}:", library_name(r.library)), r.function,
                 request ? request_text(p, r.kind, r) : arguments_text(p, r), r.result, where_name(r.where),
                 duration_text(r.duration_ns));
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

std::uint64_t total_of(const FunctionStats& s) {
  std::uint64_t sum = 0;
  for (std::uint64_t d : s.durations) sum += d;
  return sum;
}

// The records `take` names (by the name it returns; "" skips one), gathered per name, sorted:
// unsupported functions first, the first one called at the top, then the rest by total time.
template <class Name>
std::vector<FunctionStats> gather(const std::vector<Process>& processes, Name take) {
  std::map<std::string, FunctionStats> by_name;
  for (const Process& p : processes) {
    for (const trace::Record& r : p.records) {
      const std::string name = take(p, r);
      if (name.empty()) continue;
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
  std::sort(rows.begin(), rows.end(), [&](const FunctionStats& a, const FunctionStats& b) {
    if (a.unsupported != b.unsupported) return a.unsupported;
    if (a.unsupported) return a.first_ns < b.first_ns;
    return total_of(a) > total_of(b);
  });
  return rows;
}

// One row per entry point (requests are counted by the entry points that sent them); then, where
// the broker timed the device work, one row per kind of work (each kernel by its name) with its
// share of the device time.
void print_summary(const std::vector<Process>& processes) {
  std::vector<FunctionStats> calls = gather(processes, [](const Process&, const trace::Record& r) -> std::string {
    if (r.library == trace::Library::kRequest || is_device(r)) return "";
    return fmt::format("{}:{}", library_name(r.library), r.function);
  });
  fmt::print("{:<44} {:>8} {:>7} {:>10} {:>9} {:>9}\n", "function", "calls", "errors", "total", "p50", "p99");
  for (FunctionStats& s : calls) {
    fmt::print("{:<44} {:>8} {:>7} {:>10} {:>9} {:>9}{}\n", s.name, s.durations.size(), s.errors,
               duration_text(total_of(s)), duration_text(percentile(s.durations, 0.5)),
               duration_text(percentile(s.durations, 0.99)), s.unsupported ? "  UNSUPPORTED" : "");
  }
  std::vector<FunctionStats> work = gather(processes, [](const Process& p, const trace::Record& r) -> std::string {
    if (!is_device(r) || is_end_marker(r)) return "";
    return std::strcmp(r.function, "kernel") == 0 ? "kernel " + label_of(p, r) : std::string(r.function);
  });
  if (work.empty()) return;
  std::uint64_t device_total = 0;
  for (const FunctionStats& s : work) device_total += total_of(s);
  fmt::print("\n{:>8} {:>7} {:>10} {:>9} {:>9} {:>6}  {}\n", "runs", "errors", "device", "p50", "p99", "share", "device work");
  for (FunctionStats& s : work) {
    const double share = device_total == 0 ? 0.0 : 100.0 * static_cast<double>(total_of(s)) / static_cast<double>(device_total);
    fmt::print("{:>8} {:>7} {:>10} {:>9} {:>9} {:>5.1f}%  {}\n", s.durations.size(), s.errors, duration_text(total_of(s)),
               duration_text(percentile(s.durations, 0.5)), duration_text(percentile(s.durations, 0.99)), share, s.name);
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

// The track a record is drawn on: its thread, or for device work its stream's track, numbered
// past any thread id (Linux pids stay under 2^22).
constexpr std::uint32_t kStreamTrackBase = 10'000'000;

struct Tracks {
  std::vector<std::uint32_t> ids;   // in order of first appearance
  std::vector<std::string> names;
  std::map<std::uint64_t, std::uint32_t> streams;  // stream key -> track id

  std::uint32_t of(const trace::Record& r) {
    std::uint32_t id = r.tid;
    std::string name = fmt::format("thread {}", r.tid);
    if (is_device(r)) {
      const std::uint64_t key = r.args[0] <= 2 ? 0 : r.args[0];  // 0, 1, 2: the one default stream
      auto [it, fresh] = streams.emplace(key, kStreamTrackBase + static_cast<std::uint32_t>(streams.size()));
      id = it->second;
      name = "device: " + stream_name(key);
    }
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
      ids.push_back(id);
      names.push_back(name);
    }
    return id;
  }
};

// Chrome trace event format: "X" (complete) events per call, on a track per process and thread,
// with the requests nested under their entry points, and the device work on a track per stream;
// "M" events naming processes and tracks; "i" markers for the process's start, its first call,
// its first kernel launch and its first kernel on the device. Times in us from the earliest
// process start.
void print_chrome(const std::vector<Process>& processes) {
  std::uint64_t origin = UINT64_MAX;
  for (const Process& p : processes) origin = std::min(origin, p.header.start_ns);
  auto us = [&](std::uint64_t ns) {
    return fmt::format("{:.3f}", static_cast<double>(static_cast<std::int64_t>(ns - origin)) / 1e3);
  };
  std::vector<std::string> events;
  for (const Process& p : processes) {
    const int pid = p.header.pid;
    events.push_back(fmt::format(R"({{"name":"process_name","ph":"M","pid":{},"tid":{},"args":{{"name":"pid {}"}}}})", pid, pid, pid));
    events.push_back(fmt::format(R"({{"name":"process start","ph":"i","s":"p","ts":{},"pid":{},"tid":{}}})", us(p.header.start_ns), pid, pid));
    Tracks tracks;
    bool first_call = true, first_kernel = true, first_device_kernel = true;
    for (const trace::Record& r : p.records) {
      if (is_end_marker(r)) continue;
      const std::size_t known = tracks.ids.size();
      const std::uint32_t tid = tracks.of(r);
      if (tracks.ids.size() != known) {
        events.push_back(fmt::format(R"({{"name":"thread_name","ph":"M","pid":{},"tid":{},"args":{{"name":{}}}}})", pid,
                                     tid, json_string(tracks.names.back())));
      }
      const bool request = r.library == trace::Library::kRequest;
      if (is_device(r)) {
        if (first_device_kernel && std::strcmp(r.function, "kernel") == 0) {
          first_device_kernel = false;
          events.push_back(fmt::format(R"({{"name":"first kernel on the device","ph":"i","s":"p","ts":{},"pid":{},"tid":{}}})", us(r.start_ns), pid, tid));
        }
        events.push_back(fmt::format(R"({{"name":{},"cat":"device","ph":"X","ts":{},"dur":{:.3f},"pid":{},"tid":{},"args":{{"work":{},"result":{}}}}})",
                                     json_string(label_of(p, r)), us(r.start_ns), static_cast<double>(r.duration_ns) / 1e3,
                                     pid, tid, json_string(fmt::format("{} {}", r.function, device_text(p, r))), r.result));
        continue;
      }
      if (first_call && !request) {
        first_call = false;
        events.push_back(fmt::format(R"({{"name":"first call: {}","ph":"i","s":"t","ts":{},"pid":{},"tid":{}}})", r.function, us(r.start_ns), pid, tid));
      }
      // A launch is a request record of its own, or the first request of the call that sent it.
      const char* sent = request ? r.function
                         : r.where == trace::Where::kBroker ? gpubroker::wire::kind_name(r.kind)
                                                            : "";
      if (first_kernel && std::strstr(sent, "Launch") != nullptr) {
        first_kernel = false;
        events.push_back(fmt::format(R"({{"name":"first kernel launch","ph":"i","s":"p","ts":{},"pid":{},"tid":{}}})", us(r.start_ns), pid, tid));
      }
      const std::string args = request ? request_text(p, r.kind, r) : arguments_text(p, r);
      events.push_back(fmt::format(R"({{"name":{},"cat":"{}","ph":"X","ts":{},"dur":{:.3f},"pid":{},"tid":{},"args":{{"result":{},"where":"{}","request":{}}}}})",
                                   json_string(r.function), library_name(r.library), us(r.start_ns),
                                   static_cast<double>(r.duration_ns) / 1e3, pid, tid, r.result, where_name(r.where),
                                   json_string(args)));
    }
  }
  fmt::print("{{\"traceEvents\":[\n");
  for (std::size_t i = 0; i < events.size(); ++i) fmt::print("{}{}\n", events[i], i + 1 < events.size() ? "," : "");
  fmt::print("],\"displayTimeUnit\":\"ms\"}}\n");
}

std::string xml_text(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

// The fill of a record's box: a colour per library, one for requests, one per kind of device work.
const char* colour_of(const trace::Record& r) {
  if (is_device(r)) {
    if (std::strcmp(r.function, "kernel") == 0) return "#2e7d32";
    if (std::strcmp(r.function, "graph") == 0) return "#00897b";
    if (std::strcmp(r.function, "gemm") == 0) return "#6a1b9a";
    if (std::strncmp(r.function, "mem", 3) == 0) return "#ef6c00";
    return "#757575";
  }
  if (r.where == trace::Where::kUnsupported) return "#c62828";
  switch (r.library) {
    case trace::Library::kRuntime: return "#1565c0";
    case trace::Library::kDriver: return "#0097a7";
    case trace::Library::kCublas:
    case trace::Library::kCublasLt: return "#6a1b9a";
    case trace::Library::kNvml: return "#8d6e63";
    default: return "#90a4ae";
  }
}

// An SVG picture of the timeline (the README's): one row per process's thread (its calls, with
// the requests they sent drawn thinner inside them) and per stream (the device work), on one time
// axis, with the markers of the Chrome view. Each pixel column of a row is shaded by how much of
// its time the row spent in that kind of box (at least a faint shade for any), so that a picture
// of a million calls stays small and a thread making short calls with gaps between them does not
// look busy.
void print_svg(const std::vector<Process>& processes) {
  constexpr int kColumns = 1000;
  constexpr double kLeft = 190, kRow = 22, kTop = 34, kWidth = kLeft + kColumns + 10;
  std::uint64_t first = UINT64_MAX, last = 0;
  for (const Process& p : processes) {
    first = std::min(first, p.header.start_ns);
    for (const trace::Record& r : p.records) {
      if (!is_end_marker(r)) last = std::max(last, r.start_ns + r.duration_ns);
    }
  }
  if (last <= first) last = first + 1;
  const double ns_per_column = static_cast<double>(last - first) / kColumns;
  auto column_of = [&](std::uint64_t ns) {
    const double t = static_cast<double>(static_cast<std::int64_t>(ns - first)) / ns_per_column;
    return std::clamp(t, 0.0, static_cast<double>(kColumns));
  };
  // Per row, per kind of box (colour, thin or not): the busy time of each column, in columns.
  struct Row {
    std::string label;
    std::map<std::pair<std::string, bool>, std::vector<double>> busy;
  };
  std::vector<Row> rows;
  struct Marker {
    double column;
    std::string name;
  };
  std::vector<Marker> markers;
  for (const Process& p : processes) {
    Tracks tracks;
    std::map<std::uint32_t, std::size_t> row_of;
    bool first_call = true, first_kernel = true;
    for (const trace::Record& r : p.records) {
      if (is_end_marker(r)) continue;
      const std::size_t known = tracks.ids.size();
      const std::uint32_t tid = tracks.of(r);
      if (tracks.ids.size() != known) {
        row_of[tid] = rows.size();
        rows.push_back(Row{fmt::format("{} {}", p.header.pid, tracks.names.back()), {}});
      }
      if (first_call && !is_device(r) && r.library != trace::Library::kRequest) {
        first_call = false;
        markers.push_back({column_of(r.start_ns), "first call"});
      }
      if (first_kernel && is_device(r) && std::strcmp(r.function, "kernel") == 0) {
        first_kernel = false;
        markers.push_back({column_of(r.start_ns), "first kernel on the device"});
      }
      std::vector<double>& busy = rows[row_of[tid]].busy[{colour_of(r), r.library == trace::Library::kRequest}];
      busy.resize(kColumns, 0.0);
      const double from = column_of(r.start_ns), to = column_of(r.start_ns + r.duration_ns);
      for (int c = static_cast<int>(from); c < kColumns && c <= static_cast<int>(to); ++c) {
        const double overlap = std::min(to, c + 1.0) - std::max(from, static_cast<double>(c));
        busy[static_cast<std::size_t>(c)] += std::max(overlap, 1e-9);  // a call shorter than a column still shows
      }
    }
  }
  const double axis_y = kTop + static_cast<double>(rows.size()) * kRow + 14;
  const double height = axis_y + 34;
  fmt::print(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{:.0f}" height="{:.0f}" font-family="sans-serif" font-size="12">)" "\n", kWidth, height);
  fmt::print(R"(<rect width="100%" height="100%" fill="white"/>)" "\n");
  fmt::print(R"(<text x="8" y="20" font-weight="bold">gpubroker call trace: {:.1f} ms, {} process(es)</text>)" "\n",
             static_cast<double>(last - first) / 1e6, processes.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double y = kTop + static_cast<double>(i) * kRow;
    fmt::print(R"(<text x="8" y="{:.0f}">{}</text>)" "\n", y + 15, xml_text(rows[i].label));
    fmt::print(R"(<line x1="{:.0f}" x2="{:.0f}" y1="{:.0f}" y2="{:.0f}" stroke="#eeeeee"/>)" "\n", kLeft, kWidth - 10, y + 21, y + 21);
    for (const auto& [kind, busy] : rows[i].busy) {
      const auto& [colour, thin] = kind;
      // Runs of columns of one shade (in tenths; any time at all is at least the faintest) are one box.
      auto shade = [&](std::size_t c) { return busy[c] <= 0 ? 0 : std::clamp(static_cast<int>(busy[c] * 10 + 0.999), 2, 10); };
      for (std::size_t c = 0; c < busy.size();) {
        const int level = shade(c);
        std::size_t end = c + 1;
        while (end < busy.size() && shade(end) == level) ++end;
        if (level > 0) {
          fmt::print(R"(<rect x="{:.0f}" width="{}" y="{:.0f}" height="{:.0f}" fill="{}" fill-opacity="{:.1f}"/>)" "\n",
                     kLeft + static_cast<double>(c), end - c, y + (thin ? 9 : 3), thin ? 6.0 : 16.0, colour, level / 10.0);
        }
        c = end;
      }
    }
  }
  for (const Marker& m : markers) {
    const double x = kLeft + m.column;
    fmt::print(R"(<line x1="{:.1f}" x2="{:.1f}" y1="{:.0f}" y2="{:.0f}" stroke="#000000" stroke-dasharray="3,3"/>)" "\n", x, x, kTop - 6, axis_y - 12);
    fmt::print(R"(<text x="{:.1f}" y="{:.0f}" font-size="10">{}</text>)" "\n", x + 3, kTop - 2, xml_text(m.name));
  }
  for (int i = 0; i <= 10; ++i) {
    const double x = kLeft + kColumns * i / 10.0;
    fmt::print(R"(<text x="{:.0f}" y="{:.0f}" text-anchor="middle" fill="#555555">{:.1f} ms</text>)" "\n", x, axis_y,
               static_cast<double>(last - first) / 1e6 * i / 10.0);
  }
  const double legend_y = axis_y + 20;
  double legend_x = kLeft;
  for (auto [name, colour] : {std::pair{"runtime call", "#1565c0"}, {"driver call", "#0097a7"}, {"cuBLAS", "#6a1b9a"},
                              {"request", "#90a4ae"}, {"unsupported", "#c62828"}, {"kernel", "#2e7d32"},
                              {"graph", "#00897b"}, {"copy/memset", "#ef6c00"}}) {
    fmt::print(R"(<rect x="{:.0f}" y="{:.0f}" width="10" height="10" fill="{}"/><text x="{:.0f}" y="{:.0f}">{}</text>)" "\n",
               legend_x, legend_y - 9, colour, legend_x + 14, legend_y, name);
    legend_x += 120;
  }
  fmt::print("</svg>\n");
}

}  // namespace

int main(int argc, char** argv) {
  enum class Mode { kLines, kSummary, kChrome, kSvg } mode = Mode::kLines;
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
    } else if (arg == "--svg") {
      mode = Mode::kSvg;
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
    case Mode::kSvg: print_svg(processes); break;
  }
  return 0;
}
