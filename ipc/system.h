// The thin layer of system calls the ipc library stands on: file descriptors, sealed memfds,
// shared mappings, futexes and Unix seqpacket sockets with SCM_RIGHTS. Nothing above this file
// calls POSIX directly; every failure keeps its errno in the IpcError it returns.
//
// All functions may be called from any thread; the blocking ones take an explicit timeout.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ipc/result.h"

namespace gpubroker::ipc {

// An owned file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// A shared read-write mapping of a file descriptor, unmapped on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* address, std::size_t bytes) : address_(address), bytes_(bytes) {}
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  [[nodiscard]] std::byte* data() const { return static_cast<std::byte*>(address_); }
  [[nodiscard]] std::size_t size() const { return bytes_; }
  template <class T>
  [[nodiscard]] T* as() const {
    return static_cast<T*>(address_);
  }

 private:
  void* address_ = nullptr;
  std::size_t bytes_ = 0;
};

// A memfd of `bytes` (sparse: pages cost memory only once touched) sealed against shrinking,
// growing and further sealing, so that a peer can neither cut the mapping under us nor change it.
[[nodiscard]] Result<UniqueFd> create_sealed_memfd(const char* name, std::uint64_t bytes);

// Checks that `fd` carries the seals create_sealed_memfd sets and is exactly `bytes` long.
[[nodiscard]] Result<void> check_sealed_memfd(int fd, std::uint64_t bytes);

[[nodiscard]] Result<Mapping> map_shared(int fd, std::size_t bytes);

// Futex on a 32-bit word in shared memory (the non-private variant, so it works across
// processes). Waits while *word == expected, at most `timeout`; spurious returns are allowed.
void futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout);
void futex_wake_all(std::uint32_t* word);

struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;                  // primary
  std::vector<gid_t> groups;  // supplementary (SO_PEERGROUPS), as the peer had them when it connected
};

[[nodiscard]] Result<UniqueFd> listen_seqpacket(const std::string& path);
[[nodiscard]] Result<UniqueFd> connect_seqpacket(const std::string& path);
// Waits up to `timeout` for a connection; kTimedOut when none came.
[[nodiscard]] Result<UniqueFd> accept_seqpacket(int listener, std::chrono::milliseconds timeout);
// The peer's pid, uid and groups, as the kernel recorded them when it connected (SO_PEERCRED,
// SO_PEERGROUPS; where the kernel has no SO_PEERGROUPS, before Linux 4.13, the groups are read
// from /proc/PID/status instead).
[[nodiscard]] Result<PeerCredentials> peer_credentials(int socket);

[[nodiscard]] Result<void> send_message(int socket, std::span<const std::byte> bytes,
                                        std::span<const int> fds = {});

struct ReceivedMessage {
  std::size_t bytes = 0;
  std::vector<UniqueFd> fds;
};
// Receives one message into `buffer`, waiting up to `timeout`. kPeerGone on end of stream.
[[nodiscard]] Result<ReceivedMessage> receive_message(int socket, std::span<std::byte> buffer,
                                                      std::chrono::milliseconds timeout);

// Shuts both directions of a connected socket, so that the peer sees a hang-up at once.
void hang_up(int socket);

// True once the peer of a connected socket has closed it or died. Never blocks.
[[nodiscard]] bool peer_hung_up(int socket);

// Gives the core to another runnable thread, if there is one.
void yield_core();

// Whether `fd` is a regular file open for writing with O_APPEND, on a filesystem other than FUSE
// or NFS: what a peer may hand over as a file to append to (a pipe or socket, or a file whose
// writes a process serves, could block the writer; a read-only descriptor was never the peer's
// to write). Asks the filesystem: call it where a wait harms only the peer.
[[nodiscard]] bool is_append_only_file(int fd);

// Monotonic clock in nanoseconds; cheap (vDSO).
[[nodiscard]] std::int64_t monotonic_ns();

}  // namespace gpubroker::ipc
