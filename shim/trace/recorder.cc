// The trace recorder: one buffer per thread, one file per process (FILE.<pid>, a forked child
// opens its own on its first flush).
#include "shim/trace/recorder.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

__attribute__((visibility("default"))) bool g_trace_enabled = false;  // C linkage: recorder.h
__attribute__((visibility("default"))) bool g_trace_tsc = false;

namespace gpubroker::trace {

extern "C" {
__attribute__((visibility("default"))) TscScale g_trace_tsc_scale = {};
}

namespace {

constexpr std::size_t kRecordsPerBuffer = 512;  // 32 KiB per tracing thread

const char* g_prefix = nullptr;  // GPUBROKER_TRACE, read once before main
std::uint64_t g_start_ns = 0;
std::mutex g_file_lock;  // guards g_fd and g_fd_pid (taken once per flush, not per call)
int g_fd = -1;
Record g_out[kRecordsPerBuffer];  // a buffer being written, as file records
pid_t g_fd_pid = 0;


// The file of this process, opened (with its header) on the first flush of the process; a
// forked child has another pid and opens its own.
int file_of_process() {
  const pid_t pid = ::getpid();
  if (g_fd >= 0 && g_fd_pid == pid) return g_fd;
  char path[4096];
  std::snprintf(path, sizeof path, "%s.%d", g_prefix, static_cast<int>(pid));
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  FileHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kVersion;
  header.record_bytes = sizeof(Record);
  header.pid = pid;
  header.start_ns = g_start_ns;
  if (::write(fd, &header, sizeof header) != static_cast<ssize_t>(sizeof header)) {
    ::close(fd);
    return -1;
  }
  g_fd = fd;  // the parent's descriptor, when forked, stays open in the child: harmless
  g_fd_pid = pid;
  return fd;
}

struct ThreadBuffer {
  PendingRecord records[kRecordsPerBuffer];
  std::size_t count = 0;
  std::uint32_t tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));

  // The buffer as file records, in one write. Under g_file_lock, which also guards g_out.
  void write_out() noexcept {
    if (count == 0) return;
    std::lock_guard guard(g_file_lock);
    const int fd = file_of_process();
    if (fd >= 0) {
      for (std::size_t i = 0; i < count; ++i) {
        const PendingRecord& p = records[i];
        Record& r = g_out[i];
        r = Record{};
        r.start_ns = p.start_ns;
        r.duration_ns = p.duration_ns;
        r.tid = tid;
        r.result = p.result;
        r.kind = p.kind;
        r.library = p.library;
        r.where = p.where;
        std::strncpy(r.function, p.function, sizeof r.function - 1);
        std::memcpy(r.args, p.args, sizeof r.args);
      }
      // A short write loses the tail of this buffer; the reader drops a trailing partial record.
      [[maybe_unused]] const ssize_t written = ::write(fd, g_out, count * sizeof(Record));
    }
    count = 0;
  }
  ~ThreadBuffer() { write_out(); }
};

thread_local ThreadBuffer t_buffer;

// Whether the CPU's time-stamp counter ticks at one rate whatever the core's frequency and sleep
// state (constant_tsc and nonstop_tsc in /proc/cpuinfo): only then is it a clock.
bool tsc_is_a_clock() {
#if defined(__x86_64__)
  std::FILE* info = std::fopen("/proc/cpuinfo", "r");
  if (info == nullptr) return false;
  char line[4096];
  bool constant = false, nonstop = false;
  while (std::fgets(line, sizeof line, info) != nullptr) {
    if (std::strncmp(line, "flags", 5) != 0) continue;
    constant = std::strstr(line, " constant_tsc") != nullptr;
    nonstop = std::strstr(line, " nonstop_tsc") != nullptr;
    break;
  }
  std::fclose(info);
  return constant && nonstop;
#else
  return false;
#endif
}

// Ticks against CLOCK_MONOTONIC over 2 ms (once, when tracing starts): the rate to a few parts
// per million, so durations are exact to well under a nanosecond per microsecond.
void calibrate_tsc() {
#if defined(__x86_64__)
  const std::uint64_t ns0 = monotonic_ns(), ticks0 = __builtin_ia32_rdtsc();
  std::uint64_t ns1 = ns0, ticks1 = ticks0;
  while (ns1 - ns0 < 2'000'000) {
    ns1 = monotonic_ns();
    ticks1 = __builtin_ia32_rdtsc();
  }
  if (ticks1 <= ticks0) return;
  g_trace_tsc_scale = TscScale{ticks1, ns1, ((ns1 - ns0) << 32) / (ticks1 - ticks0)};
  g_trace_tsc = true;
#endif
}

__attribute__((constructor)) void read_environment() {
  const char* prefix = std::getenv("GPUBROKER_TRACE");
  if (prefix == nullptr || *prefix == '\0') return;
  g_prefix = prefix;
  if (tsc_is_a_clock()) calibrate_tsc();
  g_start_ns = now_ns();
  g_trace_enabled = true;
  // The forking thread writes its records out before fork(), so that the child's copy of the
  // buffer is empty; in the child that thread has another id.
  ::pthread_atfork([] { t_buffer.write_out(); }, nullptr,
                   [] { t_buffer.tid = static_cast<std::uint32_t>(::syscall(SYS_gettid)); });
}

}  // namespace

void append(const PendingRecord& record) noexcept {
  ThreadBuffer& buffer = t_buffer;
  buffer.records[buffer.count++] = record;
  if (buffer.count == kRecordsPerBuffer) buffer.write_out();
}

void flush() noexcept { t_buffer.write_out(); }

int process_file() noexcept {
  if (!enabled()) return -1;
  std::lock_guard guard(g_file_lock);
  return file_of_process();
}

EntryScope*& open_entry() noexcept {
  static thread_local EntryScope* open = nullptr;
  return open;
}

}  // namespace gpubroker::trace
