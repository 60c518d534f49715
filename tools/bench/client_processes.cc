#include "tools/bench/client_processes.h"

#include <fmt/core.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>

#include "gpubroker/cuda/runtime_abi.h"
#include "ipc/system.h"
#include "tools/bench/baselines.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

using ipc::monotonic_ns;

void LatencyHistogram::add(std::uint64_t ns) {
  ns = std::min<std::uint64_t>(ns, (std::uint64_t{1} << 40) - 1);
  int index = static_cast<int>(ns);
  if (ns >= kSubBuckets) {
    const int shift = static_cast<int>(std::bit_width(ns)) - 7;  // ns >> shift is in [64, 128)
    index = (shift + 1) * kSubBuckets + static_cast<int>((ns >> shift) - kSubBuckets);
  }
  ++counts_[static_cast<std::size_t>(index)];
  ++count_;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
}

Percentiles LatencyHistogram::percentiles() const {
  if (count_ == 0) return {};
  // The middle of the bucket that holds the q-th sample, as percentiles() does on raw samples.
  auto at = [&](double q) {
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[static_cast<std::size_t>(i)];
      if (seen > rank) {
        if (i < kSubBuckets) return static_cast<double>(i);
        const int shift = i / kSubBuckets - 1;
        const double low = static_cast<double>(static_cast<std::uint64_t>(i % kSubBuckets + kSubBuckets) << shift);
        return low + static_cast<double>(std::uint64_t{1} << shift) / 2;
      }
    }
    return 0.0;
  };
  return {at(0.50), at(0.99), at(0.999)};
}

namespace {

constexpr std::string_view kScenario = "clients";

struct ClientResult {
  std::int64_t start_ns = 0, end_ns = 0;
  LatencyHistogram histogram;
};

void write_all(int fd, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n <= 0) ::_exit(3);
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
}

bool read_all(int fd, void* data, std::size_t bytes) {
  auto* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::read(fd, p, bytes);
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

// Blocks until every writer of `fd` has closed it.
void wait_for_close(int fd) {
  char byte;
  while (::read(fd, &byte, 1) > 0) {
  }
}

// Starts `/proc/self/exe ARGUMENTS... FD...` where the child finds `fds` as descriptors 3, 4, ...
// (their numbers are appended to its arguments) and no other inherited descriptor. posix_spawn
// (a vfork-style clone) rather than fork: the parent may map gigabytes (the runtime scenario's
// buffers and arena), and copying its page tables would land in first-call's timed window.
pid_t spawn_child(std::vector<std::string> arguments, const std::vector<int>& fds) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  constexpr int kParked = 200;  // above anything the child is given, so that no dup2 clobbers a source
  for (std::size_t i = 0; i < fds.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, fds[i], kParked + static_cast<int>(i));
  }
  for (std::size_t i = 0; i < fds.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, kParked + static_cast<int>(i), 3 + static_cast<int>(i));
    arguments.push_back(fmt::format("{}", 3 + i));
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3 + static_cast<int>(fds.size()));
  std::vector<char*> argv{const_cast<char*>("/proc/self/exe")};
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) fail(kScenario, fmt::format("posix_spawn failed: {}", std::strerror(error)));
  return pid;
}

void reap(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fail(kScenario, fmt::format("a client process failed (status {:#x}); run it alone to see why", status));
  }
}

using StreamQuery = int (*)(void*);

int sync_client(const std::string& socket, double seconds, int result_fd, int go_fd, int release_fd) {
  ::setenv("GPUBROKER_SOCKET", socket.c_str(), 1);
  const ShimLibrary runtime(runtime_shim_path(), "sync-client");
  const auto stream_query = runtime.get<StreamQuery>("cudaStreamQuery");
  for (int i = 0; i < 1000; ++i) {
    if (stream_query(nullptr) != 0) fail("sync-client", "cudaStreamQuery failed: is the broker up?");
  }
  write_all(result_fd, "r", 1);
  wait_for_close(go_fd);
  ClientResult result;
  const std::int64_t budget = static_cast<std::int64_t>(seconds * 1e9);
  result.start_ns = monotonic_ns();
  std::int64_t now = result.start_ns;
  while (now - result.start_ns < budget) {
    const std::int64_t t0 = now;
    const int status = stream_query(nullptr);
    now = monotonic_ns();
    if (status != 0) fail("sync-client", fmt::format("cudaStreamQuery returned {}", status));
    result.histogram.add(static_cast<std::uint64_t>(now - t0));
  }
  result.end_ns = now;
  write_all(result_fd, &result, sizeof result);
  wait_for_close(release_fd);
  return 0;
}

int first_call(const std::string& socket, int result_fd) {
  ::setenv("GPUBROKER_SOCKET", socket.c_str(), 1);
  const ShimLibrary runtime(runtime_shim_path(), "first-call");
  const auto malloc_ = runtime.get<int (*)(void**, std::size_t)>("cudaMalloc");
  const auto free_ = runtime.get<int (*)(void*)>("cudaFree");
  void* p = nullptr;
  if (malloc_(&p, 1 << 20) != 0 || p == nullptr) fail("first-call", "cudaMalloc failed");
  const std::int64_t done = monotonic_ns();
  write_all(result_fd, &done, sizeof done);
  return free_(p) == 0 ? 0 : 1;
}

// Ollama's bootstrap discovery, as one runner does it (tests/programs/discovery.cc checks the
// answers; this times them): every device through the runtime, the driver and NVML.
int discovery(const std::string& socket, int result_fd) {
  ::setenv("GPUBROKER_SOCKET", socket.c_str(), 1);
  namespace rt = gpubroker::cuda::rt;
  const ShimLibrary runtime(runtime_shim_path(), "discovery");
  const ShimLibrary driver(driver_shim_path(), "discovery");
  const ShimLibrary nvml(nvml_shim_path(), "discovery");
  int failures = 0;
  auto check = [&](int status) { failures += status != 0; };
  int count = 0, version = 0;
  check(runtime.get<int (*)(int*)>("cudaGetDeviceCount")(&count));
  check(runtime.get<int (*)(int*)>("cudaDriverGetVersion")(&version));
  check(driver.get<int (*)(unsigned)>("cuInit")(0));
  int driver_count = 0;
  check(driver.get<int (*)(int*)>("cuDeviceGetCount")(&driver_count));
  check(nvml.get<int (*)()>("nvmlInit_v2")());
  unsigned nvml_count = 0;
  check(nvml.get<int (*)(unsigned*)>("nvmlDeviceGetCount_v2")(&nvml_count));
  const auto properties = runtime.get<int (*)(rt::DeviceProp13*, int)>("cudaGetDeviceProperties");
  const auto bus_id = runtime.get<int (*)(char*, int, int)>("cudaDeviceGetPCIBusId");
  const auto set_device = runtime.get<int (*)(int)>("cudaSetDevice");
  const auto memory = runtime.get<int (*)(std::size_t*, std::size_t*)>("cudaMemGetInfo");
  const auto cu_device_get = driver.get<int (*)(int*, int)>("cuDeviceGet");
  const auto cu_attribute = driver.get<int (*)(int*, int, int)>("cuDeviceGetAttribute");
  const auto cu_name = driver.get<int (*)(char*, int, int)>("cuDeviceGetName");
  const auto cu_total = driver.get<int (*)(std::size_t*, int)>("cuDeviceTotalMem_v2");
  const auto cu_uuid = driver.get<int (*)(char*, int)>("cuDeviceGetUuid_v2");
  const auto nvml_handle = nvml.get<int (*)(unsigned, void**)>("nvmlDeviceGetHandleByIndex_v2");
  const auto nvml_memory = nvml.get<int (*)(void*, unsigned long long*)>("nvmlDeviceGetMemoryInfo");
  const auto nvml_name = nvml.get<int (*)(void*, char*, unsigned)>("nvmlDeviceGetName");
  for (int device = 0; device < count; ++device) {
    rt::DeviceProp13 props{};
    check(properties(&props, device));
    char bus[32];
    check(bus_id(bus, sizeof bus, device));
    std::size_t free = 0, total = 0;
    check(set_device(device));
    check(memory(&free, &total));
    int cu = -1, value = 0;
    check(cu_device_get(&cu, device));
    check(cu_attribute(&value, 75, cu));   // compute capability major
    check(cu_attribute(&value, 102, cu));  // virtual memory management supported
    char name[256];
    check(cu_name(name, sizeof name, cu));
    check(cu_total(&total, cu));
    char uuid[16];
    check(cu_uuid(uuid, cu));
    void* handle = nullptr;
    check(nvml_handle(static_cast<unsigned>(device), &handle));
    unsigned long long nvml_bytes[3];  // nvmlMemory_t: total, free, used
    check(nvml_memory(handle, nvml_bytes));
    check(nvml_name(handle, name, sizeof name));
  }
  const std::int64_t done = monotonic_ns();
  if (failures != 0 || count < 1 || driver_count != count || static_cast<int>(nvml_count) != count) {
    fail("discovery", fmt::format("{} calls failed; runtime, driver and NVML count {}, {}, {} devices", failures, count,
                                  driver_count, nvml_count));
  }
  write_all(result_fd, &done, sizeof done);
  return nvml.get<int (*)()>("nvmlShutdown")();
}

}  // namespace

ClientsRun run_sync_clients(const std::string& socket, pid_t broker_pid, int clients, double seconds,
                            double idle_seconds) {
  // One result pipe per client: a histogram is larger than PIPE_BUF, so two clients' writes to
  // one pipe could interleave.
  int go[2], release[2];
  if (::pipe(go) != 0 || ::pipe(release) != 0) fail(kScenario, "pipe failed");
  std::vector<pid_t> pids;
  std::vector<int> results;
  for (int i = 0; i < clients; ++i) {
    int result[2];
    if (::pipe(result) != 0) fail(kScenario, "pipe failed");
    pids.push_back(spawn_child({"--child", "sync-client", socket, fmt::format("{}", seconds)},
                               {result[1], go[0], release[0]}));
    ::close(result[1]);
    results.push_back(result[0]);
    // One connection at a time: what is timed is the clients' calls, not a storm of 16
    // handshakes (which, on a loaded 2-core machine, can outlast the shim's handshake timeout).
    char ready;
    if (!read_all(result[0], &ready, 1)) fail(kScenario, "a client process died before it was ready");
  }
  ::close(go[0]);
  ::close(release[0]);
  ClientsRun run;
  if (idle_seconds > 0 && broker_pid > 0) {
    const std::uint64_t cpu0 = process_cpu_ns(broker_pid);
    const std::int64_t t0 = monotonic_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(idle_seconds));
    run.broker_idle_cpu_fraction =
        static_cast<double>(process_cpu_ns(broker_pid) - cpu0) / static_cast<double>(monotonic_ns() - t0);
  }
  const std::uint64_t cpu_before = broker_pid > 0 ? process_cpu_ns(broker_pid) : 0;
  ::close(go[1]);  // every client starts at once
  LatencyHistogram all;
  std::int64_t first_start = INT64_MAX, last_end = 0;
  for (int fd : results) {
    auto result = std::make_unique<ClientResult>();
    if (!read_all(fd, result.get(), sizeof *result)) fail(kScenario, "a client process died while timing");
    all.merge(result->histogram);
    first_start = std::min(first_start, result->start_ns);
    last_end = std::max(last_end, result->end_ns);
  }
  const std::uint64_t cpu_after = broker_pid > 0 ? process_cpu_ns(broker_pid) : 0;
  ::close(release[1]);
  for (int fd : results) ::close(fd);
  for (pid_t pid : pids) reap(pid);
  run.sync_ns = all.percentiles();
  run.calls = all.count();
  run.calls_per_s = static_cast<double>(run.calls) * 1e9 / static_cast<double>(last_end - first_start);
  if (broker_pid > 0 && run.calls > 0) {
    run.broker_cpu_ns_per_call = static_cast<double>(cpu_after - cpu_before) / static_cast<double>(run.calls);
  }
  return run;
}

std::vector<double> fresh_process_ms(const std::string& socket, const char* mode, int runs) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    int result[2];
    if (::pipe(result) != 0) fail(kScenario, "pipe failed");
    const std::int64_t t0 = monotonic_ns();
    const pid_t pid = spawn_child({"--child", mode, socket}, {result[1]});
    ::close(result[1]);
    std::int64_t done = 0;
    const bool reported = read_all(result[0], &done, sizeof done);
    ::close(result[0]);
    reap(pid);
    if (!reported) fail(kScenario, fmt::format("a {} process reported nothing", mode));
    ms.push_back(static_cast<double>(done - t0) / 1e6);
  }
  return ms;
}

int run_child(int argc, char** argv) {
  const std::int64_t started = monotonic_ns();
  const std::vector<std::string_view> args(argv, argv + argc);
  auto fd = [&](std::size_t i) { return std::atoi(argv[i]); };
  if (args.size() == 6 && args[0] == "sync-client") {
    return sync_client(argv[1], std::atof(argv[2]), fd(3), fd(4), fd(5));
  }
  if (args.size() == 3 && args[0] == "first-call") return first_call(argv[1], fd(2));
  if (args.size() == 3 && args[0] == "discovery") return discovery(argv[1], fd(2));
  if (args.size() == 3 && args[0] == "start-only") {
    write_all(fd(2), &started, sizeof started);
    return 0;
  }
  fail("--child", "unknown child mode");
}

}  // namespace gpubroker::bench
