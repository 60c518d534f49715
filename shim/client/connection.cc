#include "shim/client/connection.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "gpubroker/calls/protocol.h"
#include "ipc/log.h"
#include "ipc/socket_path.h"
#include "shim/client/visible_devices.h"
#include "shim/trace/recorder.h"

namespace gpubroker::shim {

namespace {

// A dead broker fails the handshake at once (the connection is refused or hung up), so this
// bound only matters for a live broker that is slow to answer: one accepting thread works through
// a burst of clients (16 runners starting together on a busy machine took over a second). A
// broker that does not answer in this time counts as unreachable.
constexpr std::chrono::milliseconds kHandshakeTimeout{5000};

std::atomic<Connection*> g_connection{nullptr};  // published with release after it is complete
std::mutex g_connect_lock;                       // serializes connecting
bool g_unreachable = false;                      // guarded by g_connect_lock
std::string g_failure;                           // guarded by g_connect_lock
std::once_flag g_atfork_once;
std::atomic<std::uint32_t> g_abi{0};
thread_local int t_current_device = 0;  // a visible index; see Connection::current_device()

// The device every request of the calling thread names (ClientSession::set_device_of_thread).
std::uint32_t device_of_thread(const void* connection) {
  return static_cast<const Connection*>(connection)->current_ordinal();
}

// In a forked child: forget the parent's connection without touching its shared memory (still the
// parent's), and close the child's copy of the socket.
void forget_after_fork() {
  Connection* inherited = g_connection.exchange(nullptr, std::memory_order_relaxed);
  if (inherited != nullptr) ::close(inherited->session().socket_fd());
  new (&g_connect_lock) std::mutex();  // a lock held by another thread at fork time is not ours
  g_unreachable = false;
  g_failure.clear();
  // `inherited` is deliberately leaked: destroying it would unmap memory the child never used
  // and close a descriptor twice.
}

}  // namespace

Connection* Connection::get() {
  // The fast path is one load: a forked child never sees the parent's connection, since the
  // atfork handler (forget_after_fork) clears it in the child before fork() returns there. No
  // getpid() here: glibc no longer caches the pid, so it would be a system call on every CUDA call.
  Connection* connection = g_connection.load(std::memory_order_acquire);
  if (connection != nullptr) return connection;

  std::lock_guard guard(g_connect_lock);
  connection = g_connection.load(std::memory_order_acquire);
  if (connection != nullptr) return connection;
  if (g_unreachable) return nullptr;
  std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, forget_after_fork); });

  ipc::ClientOptions options;
  options.socket_path = ipc::client_socket_path();
  options.protocol = wire::kProtocol;  // the shims speak every kind of both call tables
  options.handshake_timeout = kHandshakeTimeout;
  options.abi = g_abi.load(std::memory_order_relaxed);
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) options.visible_devices = visible;
  options.trace_fd = trace::process_file();  // -1 unless tracing
  auto session = ipc::ClientSession::connect(options);
  if (!session) {
    g_unreachable = true;
    g_failure = "gpu-broker at " + options.socket_path + " unreachable: " + ipc::describe(session.error());
    ipc::log(ipc::LogLevel::kWarning, "{}", g_failure);
    return nullptr;
  }
  auto* fresh = new Connection();
  fresh->session_ = std::move(session.value());
  fresh->table_ = &reinterpret_cast<const wire::ControlSegment*>(fresh->session_->control_bytes().data())->devices;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  fresh->visible_ = visible_devices(*fresh->table_, visible != nullptr ? std::optional<std::string_view>(visible) : std::nullopt);
  fresh->session_->set_device_of_thread(device_of_thread, fresh);
  g_connection.store(fresh, std::memory_order_release);  // pairs with the acquire load above
  return fresh;
}

void Connection::declare_abi(std::uint32_t abi) { g_abi.store(abi, std::memory_order_relaxed); }

std::uint32_t Connection::declared_abi() { return g_abi.load(std::memory_order_relaxed); }

int Connection::current_device() { return t_current_device; }

void Connection::set_current_device(int index) { t_current_device = index; }

std::uint32_t Connection::current_ordinal() const {
  if (visible_.empty()) return 0;
  const auto index = static_cast<std::size_t>(t_current_device);
  return index < visible_.size() ? visible_[index] : visible_[0];
}

std::string Connection::last_failure() {
  std::lock_guard guard(g_connect_lock);
  return g_failure;
}

ConnectionState Connection::state() const {
  return session_->alive() ? ConnectionState::kConnected : ConnectionState::kLost;
}

}  // namespace gpubroker::shim
