// The per-process call trace (issue 22): with GPUBROKER_TRACE=FILE in the environment, every
// shim call recorded here goes to FILE.<pid>, one fixed-size record per call. Recording is one
// append to the calling thread's buffer; a full buffer is written with one write(2), and so is
// what is left at thread exit and process exit. With tracing off, a call costs one load and a
// predictable branch on `g_trace_enabled` (set once, before main, by the library's constructor).
//
// The file's format (docs/trace.md): a FileHeader, then Records, each written whole by one
// write(2) of a whole buffer to a file opened O_APPEND (a thread's records stay in its order;
// threads interleave by buffer).
#pragma once

#include <cstdint>
#include <cstring>
#include <ctime>
#include <type_traits>

#include "gpubroker/trace/format.h"

// Read on every call: a plain bool, written once before any shim call can run.
extern "C" bool g_trace_enabled;
// Whether the trace's clock is the CPU's time-stamp counter, scaled to CLOCK_MONOTONIC
// nanoseconds (set with the calibration below when tracing starts on a CPU whose counter is
// constant and non-stop; the bench flips it to compare with clock_gettime in one run).
extern "C" bool g_trace_tsc;

namespace gpubroker::trace {

// GPUBROKER_TRACE_COMPILED_OUT builds the shims without the trace's hooks, to measure what the
// hooks cost with tracing off (BENCHMARKS.md); never a build anyone ships.
#if defined(GPUBROKER_TRACE_COMPILED_OUT)
constexpr bool enabled() { return false; }
#else
inline bool enabled() { return __builtin_expect(g_trace_enabled, false); }
#endif

inline std::uint64_t monotonic_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);  // vDSO: no system call
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(t.tv_nsec);
}

// The TSC's calibration: CLOCK_MONOTONIC at `base_ticks` was `base_ns`; a tick is
// `ns_per_tick_q32 / 2^32` ns. Written once, when tracing starts.
struct TscScale {
  std::uint64_t base_ticks;
  std::uint64_t base_ns;
  std::uint64_t ns_per_tick_q32;
};
extern "C" TscScale g_trace_tsc_scale;

// The trace's clock, in CLOCK_MONOTONIC nanoseconds: a time-stamp counter read and a multiply
// where the CPU allows (about a third of clock_gettime's cost; a traced call reads it four
// times), clock_gettime otherwise.
inline std::uint64_t now_ns() {
#if defined(__x86_64__)
  if (__builtin_expect(g_trace_tsc, true)) {
    const TscScale& s = g_trace_tsc_scale;
    const std::uint64_t ticks = __builtin_ia32_rdtsc() - s.base_ticks;
    return s.base_ns + static_cast<std::uint64_t>((static_cast<unsigned __int128>(ticks) * s.ns_per_tick_q32) >> 32);
  }
#endif
  return monotonic_ns();
}

// A record as the hot path keeps it: the function's name by pointer (a string literal or
// __func__, which outlive the process's calls); copied into a file Record when the buffer is written.
struct PendingRecord {
  std::uint64_t start_ns;
  std::uint64_t duration_ns;
  const char* function;
  std::uint64_t args[4];
  std::int32_t result;
  std::uint16_t kind;
  Library library;
  Where where;
};

// Appends `record` to the calling thread's buffer. Only when enabled().
void append(const PendingRecord& record) noexcept;

// Writes the calling thread's buffered records now (tests; exit does it by itself).
void flush() noexcept;

// The process's trace file, opened now (with its header) if it is not yet, or -1: the connection
// hands it to the broker, which appends the device work it runs for the process.
int process_file() noexcept;

// Records one call that started at `start_ns` and returned `result`; `function` must outlive the
// process (a string literal or __func__).
inline void record_call(const char* function, Library library, Where where, std::uint64_t start_ns,
                        std::int32_t result, std::uint16_t kind = 0, const void* payload = nullptr,
                        std::size_t payload_bytes = 0) noexcept {
  PendingRecord r;
  r.start_ns = start_ns;
  r.duration_ns = now_ns() - start_ns;
  r.function = function;
  r.args[0] = r.args[1] = r.args[2] = r.args[3] = 0;
  if (payload != nullptr) std::memcpy(r.args, payload, payload_bytes < sizeof r.args ? payload_bytes : sizeof r.args);
  r.result = result;
  r.kind = kind;
  r.library = library;
  r.where = where;
  append(r);
}

class EntryScope;
// The calling thread's open entry point: one slot per thread for every shim of the process
// (defined once, in libgpubroker-client.so; an inline variable would be one per library, and a
// runtime entry point would not see the request that the client library's operations send).
EntryScope*& open_entry() noexcept;

// One entry point's call, recorded when it returns: constructed at the top of the entry point
// (GPUBROKER_TRACE_ENTRY), it notes the result the call reports (note_result, from the shim's
// error recording) and whether a request went to the broker (note_request, from calls.h). Only
// the outermost entry point of a thread records: one the shim calls from another is part of it.
class EntryScope {
 public:
  EntryScope(const char* function, Library library) noexcept {
    if (!enabled()) return;
    EntryScope*& open = open_entry();
    if (open != nullptr) return;
    open = this;
    opened_ = true;
    function_ = function;
    library_ = library;
    start_ns_ = now_ns();
  }
  EntryScope(const EntryScope&) = delete;
  EntryScope& operator=(const EntryScope&) = delete;
  ~EntryScope() {
    if (!opened_) return;  // with tracing off: this branch, and nothing else
    open_entry() = nullptr;
    record_call(function_, library_, broker_ ? Where::kBroker : Where::kLocal, start_ns_, result_, kind_, args_, sizeof args_);
  }

  // The status the open entry point of this thread returns (the last one noted wins).
  static void note_result(std::int32_t result) noexcept {
    if (!enabled()) return;
    if (EntryScope* open = open_entry()) open->result_ = result;
  }
  // An entry point's return, noted as its result (the cuBLAS and NVML shims, whose status is the
  // return value): `return gpubroker_trace_scope.returns(status);`. A value that is no status (a
  // string) is returned untouched.
  template <class T>
  T returns(T value) const noexcept {
    if constexpr (std::is_same_v<T, int>) {
      if (opened_) open_entry()->result_ = static_cast<std::int32_t>(value);
    }
    return value;
  }
  // A request the calling thread's open entry point sends: the first one's kind and payload's
  // first words become the call's, and its record is the call's (true: the caller records
  // nothing more). False for a later request, or outside any entry point.
  static bool note_request(std::uint16_t kind, const void* payload, std::size_t bytes) noexcept {
    EntryScope* open = open_entry();
    if (open == nullptr || open->broker_) return false;
    open->broker_ = true;
    open->kind_ = kind;
    std::memset(open->args_, 0, sizeof open->args_);
    if (bytes != 0) std::memcpy(open->args_, payload, bytes < sizeof open->args_ ? bytes : sizeof open->args_);
    return true;
  }

 private:
  const char* function_ = nullptr;
  std::uint64_t start_ns_ = 0;
  std::uint64_t args_[4] = {};
  std::int32_t result_ = 0;
  std::uint16_t kind_ = 0;
  Library library_ = Library::kRuntime;
  bool broker_ = false;
  bool opened_ = false;  // this scope holds the thread's slot
};

}  // namespace gpubroker::trace

#if defined(GPUBROKER_TRACE_COMPILED_OUT)
#define GPUBROKER_TRACE_ENTRY(library) static_cast<void>(0)
#define GPUBROKER_TRACE_RETURN(...) return __VA_ARGS__
#else
// At the top of a shim entry point: records the call (its name, result, time) when tracing.
#define GPUBROKER_TRACE_ENTRY(library) \
  const ::gpubroker::trace::EntryScope gpubroker_trace_scope(__func__, ::gpubroker::trace::Library::library)
// An entry point whose status is its return value: `GPUBROKER_TRACE_RETURN(status);` returns it and
// notes it as the call's result.
#define GPUBROKER_TRACE_RETURN(...) return gpubroker_trace_scope.returns(__VA_ARGS__)
#endif
