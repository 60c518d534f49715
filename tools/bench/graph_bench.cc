// gpubroker-bench graph: CUDA graph launches through the libcudart shim. The bench registers the
// same nvcc-built fatbin as `launch` (through __cudaRegisterFatBinary/__cudaRegisterFunction, as
// a program's static constructors do), captures a graph of --nodes kernel launches on a stream
// of its own, instantiates it, and calls cudaGraphLaunch in a loop, then cudaStreamSynchronize.
// Baseline in the same run, same stream and broker: the same kernels launched one by one with
// cudaLaunchKernel. Without --socket the sim broker runs the kernels as the empty host functions
// of bench_kernels_plugin.cc, so the figures are the launch path, not arithmetic.
#include <fmt/core.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gpubroker/cuda/runtime_abi.h"
#include "ipc/system.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/report.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

namespace {

using ipc::monotonic_ns;
namespace cudart = gpubroker::cuda::rt;
constexpr std::string_view kScenario = "graph";

struct Runtime {
  explicit Runtime(const ShimLibrary& l)
      : register_fatbin(l.get<void** (*)(void*)>("__cudaRegisterFatBinary")),
        register_end(l.get<void (*)(void**)>("__cudaRegisterFatBinaryEnd")),
        register_function(l.get<decltype(register_function)>("__cudaRegisterFunction")),
        launch(l.get<decltype(launch)>("cudaLaunchKernel")),
        stream_create(l.get<int (*)(void**)>("cudaStreamCreate")),
        stream_synchronize(l.get<int (*)(void*)>("cudaStreamSynchronize")),
        begin_capture(l.get<int (*)(void*, int)>("cudaStreamBeginCapture")),
        end_capture(l.get<int (*)(void*, void**)>("cudaStreamEndCapture")),
        instantiate(l.get<int (*)(void**, void*, unsigned long long)>("cudaGraphInstantiate")),
        graph_launch(l.get<int (*)(void*, void*)>("cudaGraphLaunch")) {}

  void** (*register_fatbin)(void*);
  void (*register_end)(void**);
  void (*register_function)(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*);
  int (*launch)(const void*, cudart::dim3, cudart::dim3, void**, std::size_t, void*);
  int (*stream_create)(void**);
  int (*stream_synchronize)(void*);
  int (*begin_capture)(void*, int);
  int (*end_capture)(void*, void**);
  int (*instantiate)(void**, void*, unsigned long long);
  int (*graph_launch)(void*, void*);
};

void check(int status, const char* what) {
  if (status != 0) fail(kScenario, fmt::format("{} returned {}", what, status));
}

}  // namespace

int run_graph_bench(int argc, char** argv) {
  bool json = false;
  std::string socket, fatbin_path = default_fatbin_path();
  std::size_t count = 100'000;
  int nodes = 10, runs = 5;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--quick") count = 5'000, runs = 3;
    else if (arg.rfind("--socket=", 0) == 0) socket = std::string(arg.substr(9));
    else if (arg.rfind("--fatbin=", 0) == 0) fatbin_path = std::string(arg.substr(9));
    else if (arg.rfind("--nodes=", 0) == 0) nodes = std::stoi(std::string(arg.substr(8)));
    else fail(kScenario, fmt::format("unknown option '{}'", arg));
  }
  if (nodes < 1) fail(kScenario, "--nodes must be positive");
  std::ifstream file(fatbin_path, std::ios::binary);
  if (!file) fail(kScenario, "cannot read the fatbin " + fatbin_path + " (--fatbin=PATH)");
  std::vector<unsigned long long> image((std::filesystem::file_size(fatbin_path) + 7) / 8);  // aligned as .nv_fatbin
  file.read(reinterpret_cast<char*>(image.data()), static_cast<std::streamsize>(std::filesystem::file_size(fatbin_path)));

  const std::string plugin =
      socket.empty() ? find_beside({"libbench_kernels_plugin.so", in_shim_directory("libbench_kernels_plugin.so")}) : "";
  if (socket.empty() && plugin.empty()) fail(kScenario, "no bench kernel plugin beside this binary; pass --socket");
  const BenchBroker broker(socket, plugin, "graph");
  ::setenv("GPUBROKER_SOCKET", broker.socket().c_str(), 1);
  const ShimLibrary library(runtime_shim_path(), kScenario);
  const Runtime rt(library);

  struct Wrapper {
    int magic, version;
    const unsigned long long* data;
    void* filename_or_fatbins;
  } wrapper{0x466243B1, 1, image.data(), nullptr};
  static char kernel_stub;
  void** handle = rt.register_fatbin(&wrapper);
  char name[] = "_Z9no_paramsv";
  rt.register_function(handle, &kernel_stub, name, name, -1, nullptr, nullptr, nullptr, nullptr, nullptr);
  rt.register_end(handle);

  void* stream = nullptr;
  check(rt.stream_create(&stream), "cudaStreamCreate");
  const cudart::dim3 grid{1, 1, 1}, block{32, 1, 1};
  auto launch = [&] { check(rt.launch(&kernel_stub, grid, block, nullptr, 0, stream), "cudaLaunchKernel"); };
  constexpr int kCaptureModeGlobal = 0;
  check(rt.begin_capture(stream, kCaptureModeGlobal), "cudaStreamBeginCapture");
  for (int i = 0; i < nodes; ++i) launch();
  void* graph = nullptr;
  void* exec = nullptr;
  check(rt.end_capture(stream, &graph), "cudaStreamEndCapture");
  check(rt.instantiate(&exec, graph, 0), "cudaGraphInstantiate");

  auto rate = [&](std::size_t n, auto&& body) {
    const std::int64_t t0 = monotonic_ns();
    for (std::size_t i = 0; i < n; ++i) body();
    check(rt.stream_synchronize(stream), "cudaStreamSynchronize");
    return static_cast<double>(n) * 1e9 / static_cast<double>(monotonic_ns() - t0);
  };
  auto graph_launch = [&] { check(rt.graph_launch(exec, stream), "cudaGraphLaunch"); };
  (void)rate(count / 10, graph_launch);  // warm-up
  (void)rate(count / 10, launch);
  std::vector<double> graphs, kernels;
  for (int r = 0; r < runs; ++r) {
    graphs.push_back(rate(count, graph_launch));
    kernels.push_back(rate(count * static_cast<std::size_t>(nodes), launch));
  }
  const double graphs_per_s = median(graphs), kernel_launches_per_s = median(kernels);

  Report report;
  report.number("graph_nodes", nodes);
  report.number("graph_launches_per_s", graphs_per_s);
  report.number("graph_kernels_per_s", graphs_per_s * nodes);
  report.number("kernel_launches_per_s", kernel_launches_per_s);
  report.number("graph_kernels_over_launches", graphs_per_s * nodes / kernel_launches_per_s);
  if (json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench graph on {} ({} graph launches x {} runs, medians, executed: ends with a stream sync)\n",
             machine_name(), count, runs);
  fmt::print("  graph of {} kernel nodes: {:.3f} M graphs/s = {:.2f} M kernels/s\n", nodes, graphs_per_s / 1e6,
             graphs_per_s * nodes / 1e6);
  fmt::print("  baseline, the same kernel with cudaLaunchKernel: {:.2f} M launches/s ({:.2f}x of it through graphs)\n",
             kernel_launches_per_s / 1e6, graphs_per_s * nodes / kernel_launches_per_s);
  return 0;
}

}  // namespace gpubroker::bench
