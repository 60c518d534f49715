// The runtime shim's failure behaviour, with the shim loaded the way a runner loads it (dlopen of
// libcudart.so.13) in child processes: no broker, a broker that dies mid-session, fork, and a
// process that never calls CUDA. Never a hang: each failure must come back within 100 ms.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ipc/system.h"
#include "tests/support/broker_process.h"
#include "tests/support/eventually.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::TempDir;

namespace {

constexpr int kErrorDevicesUnavailable = 46;
constexpr int kErrorNoDevice = 100;

// The runtime entry points a test needs, resolved from the shim.
struct Runtime {
  void* library = nullptr;
  int (*get_device_count)(int*) = nullptr;
  int (*malloc_)(void**, std::size_t) = nullptr;
  int (*memcpy_)(void*, const void*, std::size_t, int) = nullptr;
  int (*device_synchronize)() = nullptr;
  int (*get_last_error)() = nullptr;

  bool load() {
    library = ::dlopen(testing::env_or("GPUBROKER_CUDART13", "libcudart.so.13"), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return false;
    get_device_count = reinterpret_cast<int (*)(int*)>(::dlsym(library, "cudaGetDeviceCount"));
    malloc_ = reinterpret_cast<int (*)(void**, std::size_t)>(::dlsym(library, "cudaMalloc"));
    memcpy_ = reinterpret_cast<int (*)(void*, const void*, std::size_t, int)>(::dlsym(library, "cudaMemcpy"));
    device_synchronize = reinterpret_cast<int (*)()>(::dlsym(library, "cudaDeviceSynchronize"));
    get_last_error = reinterpret_cast<int (*)()>(::dlsym(library, "cudaGetLastError"));
    return get_device_count && malloc_ && memcpy_ && device_synchronize && get_last_error;
  }
};

int in_child(const std::function<int()>& body) { return testing::wait_for_child(testing::run_in_child(body)); }

std::int64_t ms_since(std::int64_t start) { return (ipc::monotonic_ns() - start) / 1'000'000; }

}  // namespace

TEST_CASE("with no broker, cudaGetDeviceCount reports zero devices and an error within 100 ms", "[runtime][failure]") {
  TempDir dir;
  CHECK(in_child([&] {
          ::setenv("GPUBROKER_SOCKET", (dir.path() + "/absent.sock").c_str(), 1);
          Runtime rt;
          if (!rt.load()) return 10;
          const std::int64_t start = ipc::monotonic_ns();
          int count = -1;
          const int error = rt.get_device_count(&count);
          if (ms_since(start) >= 100) return 1;
          if (error != kErrorNoDevice || count != 0) return 2;
          void* p = nullptr;
          return rt.malloc_(&p, 16) == kErrorNoDevice ? 0 : 3;  // and every later call fails at once
        }) == 0);
}

TEST_CASE("when the broker dies mid-session, calls fail with cudaErrorDevicesUnavailable within 100 ms",
          "[runtime][failure]") {
  TempDir dir;
  BrokerProcess broker(dir);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t client = testing::run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    Runtime rt;
    if (!rt.load()) return 10;
    void* device = nullptr;
    if (rt.malloc_(&device, 64 << 20) != 0) return 1;
    [[maybe_unused]] auto n = ::write(ready[1], "r", 1);
    // Keep the broker busy with synchronous work until it dies under us.
    std::vector<char> host(64 << 20);
    for (;;) {
      const int error = rt.memcpy_(device, host.data(), host.size(), 1);
      if (error == 0) continue;
      const std::int64_t failed = ipc::monotonic_ns();
      std::int64_t killed = 0;
      if (::read(ready[0], &killed, sizeof(killed)) != sizeof(killed)) return 2;
      if (error != kErrorDevicesUnavailable) return 3;
      if ((failed - killed) / 1'000'000 >= 100) return 4;
      return rt.device_synchronize() == kErrorDevicesUnavailable ? 0 : 5;
    }
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::int64_t killed = ipc::monotonic_ns();
  ::kill(broker.pid(), SIGKILL);
  REQUIRE(::write(ready[1], &killed, sizeof(killed)) == sizeof(killed));
  CHECK(testing::wait_for_child(client) == 0);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("a process that loads the runtime shim and never calls it opens no session", "[runtime]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child([&] {
          ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
          Runtime rt;
          return rt.load() ? 0 : 10;
        }) == 0);
  CHECK(in_child([&] {
          ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
          Runtime rt;
          if (!rt.load()) return 10;
          int count = 0;
          return rt.get_device_count(&count) == 0 && count == 1 ? 0 : 1;
        }) == 0);
  // The stats file counts the sessions ever opened: only the second process opened one. The broker
  // counts a session just after its handshake, which the client may outrun to its exit.
  const int fd = ::open((broker.socket_path() + ".stats").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::uint64_t header[8] = {};
  const testing::Waited counted = testing::poll_until([&] {
    return ::pread(fd, header, sizeof(header), 0) == sizeof(header) && header[6] >= 1;  // StatsHeader::sessions_total
  });
  ::close(fd);
  INFO("the session counted after " << counted.milliseconds << " ms");
  CHECK(header[6] == 1);
}

namespace {

std::vector<std::string> read_symbols(const char* path) {
  std::vector<std::string> names;
  FILE* file = std::fopen(path, "r");
  if (file == nullptr) return names;
  char line[256];
  while (std::fgets(line, sizeof(line), file) != nullptr) {
    std::string name(line);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    if (!name.empty() && name[0] != '#') names.push_back(name);
  }
  std::fclose(file);
  return names;
}

}  // namespace

TEST_CASE("both runtime shims export every function of the real runtime in its version node", "[runtime][exports]") {
  for (const auto& [library, symbols, node] :
       {std::tuple{"GPUBROKER_CUDART13", "GPUBROKER_CUDART13_SYMBOLS", "libcudart.so.13"},
        std::tuple{"GPUBROKER_CUDART12", "GPUBROKER_CUDART12_SYMBOLS", "libcudart.so.12"}}) {
    INFO(node);
    void* handle = ::dlopen(testing::env_or(library, ""), RTLD_NOW | RTLD_LOCAL);
    REQUIRE(handle != nullptr);
    const auto names = read_symbols(testing::env_or(symbols, ""));
    REQUIRE(names.size() > 400);
    int missing = 0;
    for (const std::string& name : names) {
      if (::dlvsym(handle, name.c_str(), node) == nullptr) {
        ++missing;
        UNSCOPED_INFO("missing: " << name);
      }
    }
    CHECK(missing == 0);
  }
}

TEST_CASE("a function the shim does not serve returns cudaErrorNotSupported and says so once", "[runtime][exports]") {
  TempDir dir;
  const std::string log = dir.path() + "/stderr.txt";
  CHECK(in_child([&] {
          if (std::freopen(log.c_str(), "w", stderr) == nullptr) return 10;
          void* handle = ::dlopen(testing::env_or("GPUBROKER_CUDART13", ""), RTLD_NOW | RTLD_LOCAL);
          if (handle == nullptr) return 11;
          // cudaGraphicsMapResources (graphics interop) is one the broker will never serve.
          auto unsupported = reinterpret_cast<int (*)(int, void*, void*)>(::dlsym(handle, "cudaGraphicsMapResources"));
          if (unsupported == nullptr) return 12;
          auto get_last = reinterpret_cast<int (*)()>(::dlsym(handle, "cudaGetLastError"));
          auto peek_last = reinterpret_cast<int (*)()>(::dlsym(handle, "cudaPeekAtLastError"));
          if (get_last == nullptr || peek_last == nullptr) return 13;
          const int first = unsupported(0, nullptr, nullptr);
          // The stub's error is the thread's last error, as the real runtime records a failed call's.
          const int peeked = peek_last(), taken = get_last(), cleared = get_last();
          const int second = unsupported(0, nullptr, nullptr);
          std::fflush(stderr);
          return first == 801 && second == 801 && peeked == 801 && taken == 801 && cleared == 0 ? 0 : 1;
        }) == 0);
  FILE* file = std::fopen(log.c_str(), "r");
  REQUIRE(file != nullptr);
  char text[4096] = {};
  const std::size_t n = std::fread(text, 1, sizeof(text) - 1, file);
  std::fclose(file);
  const std::string output(text, n);
  const auto first = output.find("cudaGraphicsMapResources");
  CHECK(first != std::string::npos);
  CHECK(output.find("cudaGraphicsMapResources", first + 1) == std::string::npos);  // once
}
