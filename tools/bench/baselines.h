// The baselines gpubroker-bench's scenarios print beside the brokered figures, measured in the
// same run: memcpy bandwidth, a Unix-socket round trip between two processes, the raw ring round
// trip to the broker (no shim), and the broker's own counters and CPU time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "tools/bench/report.h"

namespace gpubroker::bench {

// Single-thread memcpy of `bytes` between two buffers, `repeats` times after one warm-up copy.
double memcpy_gbps(std::size_t bytes, int repeats);

// A 64-byte echo over a SOCK_SEQPACKET socketpair to a forked process, `count` times. Safe to
// call with a shim loaded: the child only reads and writes its socket.
Percentiles unix_socket_round_trip_ns(std::size_t count);

// A synchronous kNull call on the transport (a session of its own, no shim), `count` times.
Percentiles ring_round_trip_ns(const std::string& socket, std::size_t count);

// The broker's count of bytes that crossed staging pipes (kBrokerTotals.staged_bytes).
std::uint64_t broker_staged_bytes(const std::string& socket);

// CPU time (user + system, every live thread) that process `pid` has used, in ns, read from
// /proc/PID/task/*/schedstat; 0 when it cannot be read. Threads that exit between two readings
// take their time with them: measure while the sessions of interest are still open.
std::uint64_t process_cpu_ns(pid_t pid);

}  // namespace gpubroker::bench
