// gpubroker-bench launch: how fast one client thread can submit kernel launches through the
// runtime shim, and how long until the broker has executed them all.
//
// The bench registers a real nvcc-built fatbin (tests/data/fatbin/kernels_sm90_raw.fatbin, or
// --fatbin=PATH) through the shim's __cudaRegisterFatBinary/__cudaRegisterFunction, exactly as a
// program's static constructors would, and launches with cudaLaunchKernel. Without --socket it
// starts a sim broker whose kernels are the empty host implementations of
// bench_kernels_plugin.cc. Baseline in the same run: a null asynchronous message on the raw
// transport (the floor any launch pays).
#include <dlfcn.h>
#include <fmt/core.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "gpubroker/calls/protocol.h"
#include "gpubroker/cuda/runtime_abi.h"
#include "ipc/client_session.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/report.h"

namespace gpubroker::bench {

namespace {

using ipc::monotonic_ns;
namespace cudart = gpubroker::cuda::rt;

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "gpubroker-bench launch: {}\n", what);
  std::exit(1);
}

struct Shim {
  void** (*register_fatbin)(void*);
  void (*register_end)(void**);
  void (*register_function)(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*);
  int (*launch)(const void*, cudart::dim3, cudart::dim3, void**, std::size_t, void*);
  int (*synchronize)();
  int (*malloc_)(void**, std::size_t);
};

Shim load_shim(const std::string& path) {
  void* library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) die(fmt::format("cannot load {}: {}", path, ::dlerror()));
  auto symbol = [&](const char* name) {
    void* p = ::dlsym(library, name);
    if (p == nullptr) die(fmt::format("the shim lacks {}", name));
    return p;
  };
  return Shim{reinterpret_cast<void** (*)(void*)>(symbol("__cudaRegisterFatBinary")),
              reinterpret_cast<void (*)(void**)>(symbol("__cudaRegisterFatBinaryEnd")),
              reinterpret_cast<void (*)(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*)>(
                  symbol("__cudaRegisterFunction")),
              reinterpret_cast<int (*)(const void*, cudart::dim3, cudart::dim3, void**, std::size_t, void*)>(
                  symbol("cudaLaunchKernel")),
              reinterpret_cast<int (*)()>(symbol("cudaDeviceSynchronize")),
              reinterpret_cast<int (*)(void**, std::size_t)>(symbol("cudaMalloc"))};
}

struct LaunchRun {
  double submit_per_s;  // launches posted per second
  double done_per_s;    // launches per second including the final synchronize
};

template <class Launch>
LaunchRun run(std::size_t count, Launch&& launch, const Shim& shim) {
  const std::int64_t t0 = monotonic_ns();
  for (std::size_t i = 0; i < count; ++i) {
    if (launch() != 0) die("a launch failed");
  }
  const std::int64_t t1 = monotonic_ns();
  if (shim.synchronize() != 0) die("cudaDeviceSynchronize failed after the launches");
  const std::int64_t t2 = monotonic_ns();
  return {static_cast<double>(count) * 1e9 / static_cast<double>(t1 - t0),
          static_cast<double>(count) * 1e9 / static_cast<double>(t2 - t0)};
}

}  // namespace

int run_launch_bench(int argc, char** argv) {
  bool json = false;
  std::string socket, fatbin_path = default_fatbin_path();
  std::size_t count = 1'000'000;
  int runs = 5;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--quick") count = 100'000, runs = 3;
    else if (arg.rfind("--socket=", 0) == 0) socket = std::string(arg.substr(9));
    else if (arg.rfind("--fatbin=", 0) == 0) fatbin_path = std::string(arg.substr(9));
    else die(fmt::format("unknown option '{}'", arg));
  }
  std::ifstream file(fatbin_path, std::ios::binary);
  if (!file) die("cannot read the fatbin " + fatbin_path + " (--fatbin=PATH)");
  // Aligned like the .nv_fatbin section the linker makes.
  std::vector<unsigned long long> image((std::filesystem::file_size(fatbin_path) + 7) / 8);
  file.read(reinterpret_cast<char*>(image.data()), static_cast<std::streamsize>(std::filesystem::file_size(fatbin_path)));

  const std::string plugin =
      socket.empty() ? find_beside({"libbench_kernels_plugin.so", in_shim_directory("libbench_kernels_plugin.so")}) : "";
  if (socket.empty() && plugin.empty()) die("no bench kernel plugin beside this binary; pass --socket");
  const BenchBroker broker(socket, plugin, "launch");
  socket = broker.socket();
  ::setenv("GPUBROKER_SOCKET", socket.c_str(), 1);
  const std::string shim_path = runtime_shim_path();
  if (shim_path.empty()) die("no libcudart.so.13 shim beside this binary");
  const Shim shim = load_shim(shim_path);

  // What nvcc's static constructor does, with two host stubs of our own as the launch keys.
  struct Wrapper {
    int magic, version;
    const unsigned long long* data;
    void* filename_or_fatbins;
  } wrapper{0x466243B1, 1, image.data(), nullptr};
  static char no_params_stub, kern_stub;
  void** handle = shim.register_fatbin(&wrapper);
  char no_params_name[] = "_Z9no_paramsv", kern_name[] = "_Z4kern1SPfif";
  shim.register_function(handle, &no_params_stub, no_params_name, no_params_name, -1, nullptr, nullptr, nullptr,
                         nullptr, nullptr);
  shim.register_function(handle, &kern_stub, kern_name, kern_name, -1, nullptr, nullptr, nullptr, nullptr, nullptr);
  shim.register_end(handle);

  void* out = nullptr;
  if (shim.malloc_(&out, 4096) != 0) die("cudaMalloc failed: is the broker up?");
  struct S {
    int a;
    double b;
    char c[8];
  } s{1, 2.0, {}};
  int n = 1024;
  float scale = 0.5f;
  void* kern_args[] = {&s, &out, &n, &scale};
  const cudart::dim3 grid{1, 1, 1}, block{32, 1, 1};
  auto launch_empty = [&] { return shim.launch(&no_params_stub, grid, block, nullptr, 0, nullptr); };
  auto launch_kern = [&] { return shim.launch(&kern_stub, grid, block, kern_args, 0, nullptr); };
  (void)run(1000, launch_empty, shim);  // resolves the kernels: module load, functions
  (void)run(1000, launch_kern, shim);

  std::vector<double> empty_submit, empty_done, kern_submit, kern_done;
  for (int i = 0; i < runs; ++i) {
    const LaunchRun e = run(count, launch_empty, shim);
    const LaunchRun k = run(count, launch_kern, shim);
    empty_submit.push_back(e.submit_per_s);
    empty_done.push_back(e.done_per_s);
    kern_submit.push_back(k.submit_per_s);
    kern_done.push_back(k.done_per_s);
  }

  // Baseline: null asynchronous messages on the raw transport, same broker.
  double null_rate = 0;
  {
    ipc::ClientOptions options;
    options.socket_path = socket;
    options.protocol = wire::kProtocol;  // gpu-broker's
    auto session = ipc::ClientSession::connect(options);
    if (!session) die("cannot open a baseline session");
    std::vector<double> rates;
    for (int i = 0; i < runs; ++i) {
      const std::int64_t t0 = monotonic_ns();
      for (std::size_t j = 0; j < count; ++j) (void)session.value()->post(wire::RequestKind::kNull, {});
      (void)session.value()->call(wire::RequestKind::kNull, {});
      rates.push_back(static_cast<double>(count) * 1e9 / static_cast<double>(monotonic_ns() - t0));
    }
    null_rate = median(rates);
  }
  Report report;
  report.number("launches_per_s", median(kern_submit));
  report.number("launches_executed_per_s", median(kern_done));
  report.number("empty_launches_per_s", median(empty_submit));
  report.number("empty_launches_executed_per_s", median(empty_done));
  report.number("null_messages_per_s", null_rate);
  report.number("launches_over_null_messages", median(kern_submit) / null_rate);
  if (json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench launch on {} ({} launches x {} runs, medians)\n", machine_name(), count, runs);
  fmt::print("  kern(S, float*, int, float), 40-byte parameters: submitted {:.2f} M/s, executed {:.2f} M/s\n",
             median(kern_submit) / 1e6, median(kern_done) / 1e6);
  fmt::print("  no_params():                                      submitted {:.2f} M/s, executed {:.2f} M/s\n",
             median(empty_submit) / 1e6, median(empty_done) / 1e6);
  fmt::print("  baseline, null async messages on the transport:   {:.2f} M/s ({:.2f}x of it for kern)\n",
             null_rate / 1e6, median(kern_submit) / null_rate);
  return 0;
}

}  // namespace gpubroker::bench
