// The call trace file (GPUBROKER_TRACE=FILE writes FILE.<pid>; docs/trace.md): a FileHeader, then
// Records, in the byte order of the machine that wrote them. Written by the shims' recorder
// (shim/trace/) and, for the device work of the process's session, by the broker (through the
// file descriptor the process hands it at its handshake; broker/session_timeline.h); read by
// gpu-broker-trace. Every write is of whole records (and a name with its record), to a file
// opened O_APPEND, so the writers interleave without tearing one another's records.
#pragma once

#include <cstdint>

namespace gpubroker::trace {

inline constexpr char kMagic[8] = {'G', 'B', 'T', 'R', 'A', 'C', 'E', '\0'};
inline constexpr std::uint32_t kVersion = 2;

// kRequest: a request the shim sent to the broker (shim/client/calls.h), recorded besides the
// entry point that sent it; the request is the same whichever library sent it.
// kDevice: work the broker ran on the device for the process (a kernel, a copy, a memset, a graph
//   launch, a host function's notice, a GEMM), timed on the device by events around it: `tid` is
//   0, `function` says what ran (DeviceWork's names), args[0] is the session's stream id, and
//   args[1..3] are DeviceWork's words. Written by the broker.
// kName: the name of an object the other records name by id (args[0]: the kernel's function id,
//   as launches carry it); args[1] is the name's length, and the name follows the record, padded
//   with NULs to a multiple of 8 bytes. Written by the broker before the first record naming it.
enum class Library : std::uint8_t {
  kRuntime = 0, kDriver = 1, kCublas = 2, kCublasLt = 3, kNvml = 4, kRequest = 5, kDevice = 6, kName = 7,
};

// A kDevice record's args[1..3], by its function:
//   "kernel": the function id, then its grid and block as pack_dims() packs them
//   "memcpy HtoD", "memcpy DtoH", "memcpy DtoD", "memset": the bytes
//   "graph": the graph exec's id; "host function": the client's function id
//   "gemm": m, n, k
// Grid and block dimensions in one word each: x in the low 32 bits, then y and z in 16 bits each
// (CUDA bounds a grid's y and z, and every block dimension, under 65536).
inline constexpr std::uint64_t pack_dims(const std::uint32_t (&d)[3]) {
  return std::uint64_t{d[0]} | std::uint64_t{d[1] & 0xffffu} << 32 | std::uint64_t{d[2] & 0xffffu} << 48;
}
inline constexpr std::uint32_t dim_x(std::uint64_t packed) { return static_cast<std::uint32_t>(packed); }
inline constexpr std::uint32_t dim_y(std::uint64_t packed) { return static_cast<std::uint32_t>(packed >> 32 & 0xffffu); }
inline constexpr std::uint32_t dim_z(std::uint64_t packed) { return static_cast<std::uint32_t>(packed >> 48); }

inline constexpr std::uint64_t kNameAlign = 8;
inline constexpr std::uint64_t kMaxNameBytes = 4096;  // a reader refuses a longer one
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

// The bytes of a name that follow its kName record.
inline constexpr std::uint64_t padded_name_bytes(std::uint64_t length) {
  return (length + kNameAlign - 1) / kNameAlign * kNameAlign;
}
static_assert(sizeof(FileHeader) == 32);
static_assert(sizeof(Record) == 112);

}  // namespace gpubroker::trace
