// The call trace file (GPUBROKER_TRACE=FILE writes FILE.<pid>; docs/trace.md): a FileHeader, then
// fixed-size Records, in the byte order of the machine that wrote them. Written by the shims'
// recorder (shim/trace/), read by gpu-broker-trace.
#pragma once

#include <cstdint>

namespace gpubroker::trace {

inline constexpr char kMagic[8] = {'G', 'B', 'T', 'R', 'A', 'C', 'E', '\0'};
inline constexpr std::uint32_t kVersion = 1;

// kRequest: a request the shim sent to the broker (shim/client/calls.h), recorded besides the
// entry point that sent it; the request is the same whichever library sent it.
enum class Library : std::uint8_t { kRuntime = 0, kDriver = 1, kCublas = 2, kCublasLt = 3, kNvml = 4, kRequest = 5 };
// Where a call was answered: by the broker (a request went out), in the process, or by an
// unsupported stub.
enum class Where : std::uint8_t { kLocal = 0, kBroker = 1, kUnsupported = 2 };

struct FileHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t record_bytes;  // sizeof(Record) of the writer: a reader refuses another size
  std::int32_t pid;
  std::uint32_t reserved;
  std::uint64_t start_ns;  // CLOCK_MONOTONIC when the process enabled tracing
};

struct Record {
  std::uint64_t start_ns;     // CLOCK_MONOTONIC
  std::uint64_t duration_ns;
  std::uint32_t tid;
  std::int32_t result;        // the status the call returned (cudaError_t, CUresult, ...)
  std::uint16_t kind;         // the wire::RequestKind sent, for Where::kBroker; 0 otherwise
  Library library;
  Where where;
  std::uint32_t reserved;
  char function[48];          // NUL-terminated, truncated
  std::uint64_t args[4];      // the first words of the request's payload (sizes, pointers, stream)
};
static_assert(sizeof(FileHeader) == 32);
static_assert(sizeof(Record) == 112);

}  // namespace gpubroker::trace
