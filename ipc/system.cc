#include "ipc/system.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace gpubroker::ipc {

namespace {

constexpr unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return IpcError{IpcErrc::kInvalidArgument, ENAMETOOLONG};
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// poll() on one descriptor, retried on EINTR; returns revents, 0 on timeout.
Result<short> poll_one(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n >= 0) return n == 0 ? short{0} : p.revents;
    if (errno != EINTR) return system_error(errno);
  }
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Mapping::Mapping(Mapping&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) ::munmap(address_, bytes_);
    address_ = std::exchange(other.address_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Mapping::~Mapping() {
  if (address_ != nullptr) ::munmap(address_, bytes_);
}

Result<UniqueFd> create_sealed_memfd(const char* name, std::uint64_t bytes) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd.valid()) return system_error(errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return system_error(errno);
  if (::fcntl(fd.get(), F_ADD_SEALS, kRequiredSeals) != 0) return system_error(errno);
  return fd;
}

Result<void> check_sealed_memfd(int fd, std::uint64_t bytes) {
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return IpcError{IpcErrc::kBadSegment, errno};
  if ((static_cast<unsigned>(seals) & kRequiredSeals) != kRequiredSeals) {
    return IpcError{IpcErrc::kBadSegment, 0, seals};
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) return IpcError{IpcErrc::kBadSegment, errno};
  if (static_cast<std::uint64_t>(st.st_size) != bytes) {
    return IpcError{IpcErrc::kBadSegment, 0, static_cast<std::int64_t>(st.st_size)};
  }
  return boost::outcome_v2::success();
}

Result<Mapping> map_shared(int fd, std::size_t bytes) {
  void* address = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (address == MAP_FAILED) return system_error(errno);
  return Mapping(address, bytes);
}

void futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // FUTEX_WAIT (not FUTEX_WAIT_PRIVATE): the word is shared with another process.
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

Result<UniqueFd> listen_seqpacket(const std::string& path) {
  auto address = unix_address(path);
  if (!address) return address.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return system_error(errno);
  // A socket file left by a broker that died is replaced; a live broker keeps answering on it.
  if (connect_seqpacket(path)) return IpcError{IpcErrc::kSystem, EADDRINUSE};
  // The socket is bound and listening under a temporary name first, then renamed into place, so
  // that whoever sees the file can connect: a client that connected between bind() and listen()
  // would be refused, and a shim remembers an unreachable broker for the life of its process.
  const std::string temporary = path + "." + std::to_string(::getpid());
  auto bound_address = unix_address(temporary);
  const bool via_temporary = bound_address.has_value();
  if (!via_temporary) bound_address = address;  // too long a name for the detour: bind in place
  const std::string& bound_path = via_temporary ? temporary : path;
  ::unlink(bound_path.c_str());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&bound_address.value()), sizeof(sockaddr_un)) != 0) {
    return system_error(errno);
  }
  if (::listen(fd.get(), 128) != 0) {
    const int error = errno;
    ::unlink(bound_path.c_str());
    return system_error(error);
  }
  if (via_temporary && ::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return system_error(error);
  }
  return fd;
}

Result<UniqueFd> connect_seqpacket(const std::string& path) {
  auto address = unix_address(path);
  if (!address) return address.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return system_error(errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.value()), sizeof(sockaddr_un)) != 0) {
    return system_error(errno);
  }
  return fd;
}

Result<UniqueFd> accept_seqpacket(int listener, std::chrono::milliseconds timeout) {
  auto ready = poll_one(listener, POLLIN, static_cast<int>(timeout.count()));
  if (!ready) return ready.error();
  if (ready.value() == 0) return IpcError{IpcErrc::kTimedOut};
  UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) return system_error(errno);
  return fd;
}

namespace {

// The "Groups:" line of /proc/PID/status: the fallback for kernels without SO_PEERGROUPS.
std::vector<gid_t> groups_from_proc(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::vector<gid_t> groups;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ids(line.substr(7));
    for (gid_t id = 0; ids >> id;) groups.push_back(id);
  }
  return groups;
}

}  // namespace

Result<PeerCredentials> peer_credentials(int socket) {
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return system_error(errno);
  PeerCredentials peer{cred.pid, cred.uid, cred.gid, std::vector<gid_t>(64)};
  // Asked once more with the size the kernel says where 64 groups were not enough.
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(peer.groups.size() * sizeof(gid_t));
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERGROUPS, peer.groups.data(), &bytes) == 0) {
      peer.groups.resize(bytes / sizeof(gid_t));
      return peer;
    }
    if (errno == ENOPROTOOPT) {
      peer.groups = groups_from_proc(cred.pid);
      return peer;
    }
    if (errno != ERANGE) return system_error(errno);
    peer.groups.resize(bytes / sizeof(gid_t));
  }
  return system_error(ERANGE);
}

Result<void> send_message(int socket, std::span<const std::byte> bytes, std::span<const int> fds) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)]{};
  if (!fds.empty()) {
    if (fds.size() > 8) return IpcError{IpcErrc::kInvalidArgument};
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* header = CMSG_FIRSTHDR(&msg);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n >= 0) return boost::outcome_v2::success();
    if (errno == EPIPE || errno == ECONNRESET) return IpcError{IpcErrc::kPeerGone, errno};
    if (errno != EINTR) return system_error(errno);
  }
}

Result<ReceivedMessage> receive_message(int socket, std::span<std::byte> buffer,
                                        std::chrono::milliseconds timeout) {
  auto ready = poll_one(socket, POLLIN, static_cast<int>(timeout.count()));
  if (!ready) return ready.error();
  if (ready.value() == 0) return IpcError{IpcErrc::kTimedOut};
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)]{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ECONNRESET) return IpcError{IpcErrc::kPeerGone, errno};
    return system_error(errno);
  }
  ReceivedMessage received;
  // Take ownership of every descriptor first, so none leaks whatever else is wrong.
  for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
      received.fds.emplace_back(fd);
    }
  }
  if (n == 0) return IpcError{IpcErrc::kPeerGone};
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return IpcError{IpcErrc::kProtocol};
  received.bytes = static_cast<std::size_t>(n);
  return received;
}

void hang_up(int socket) { ::shutdown(socket, SHUT_RDWR); }

bool peer_hung_up(int socket) {
  auto revents = poll_one(socket, POLLRDHUP, 0);
  return !revents || (revents.value() & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0;
}

void yield_core() { ::sched_yield(); }

bool is_append_only_file(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY || (flags & O_APPEND) == 0) return false;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  struct statfs fs{};
  constexpr long kFuseMagic = 0x65735546, kNfsMagic = 0x6969;
  return ::fstatfs(fd, &fs) == 0 && fs.f_type != kFuseMagic && fs.f_type != kNfsMagic;
}

std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace gpubroker::ipc
