// gpubroker-bench: the project's benchmarks. Each scenario measures the brokered path and a
// baseline in the same run and prints p50/p99/p99.9 and ratios, naming the machine.
#include <fmt/core.h>

#include <cstring>
#include <string_view>

namespace gpubroker::bench {
int run_ipc_bench(int argc, char** argv);
int run_runtime_bench(int argc, char** argv);
int run_launch_bench(int argc, char** argv);
}

namespace {

void usage() {
  fmt::print(
      "usage: gpubroker-bench SCENARIO [options]\n"
      "\n"
      "scenarios:\n"
      "  ipc       the shared-memory transport against Unix and TCP sockets and memcpy\n"
      "  runtime   CUDA runtime calls and copies through the libcudart shim and a broker\n"
      "            (--socket=PATH to use a running broker; else a sim broker is started)\n"
      "\n"
      "options (every scenario):\n"
      "  --json    print one JSON object on one line instead of a table\n"
      "  --quick   fewer iterations (for smoke tests)\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string_view scenario = argv[1];
  if (scenario == "ipc") return gpubroker::bench::run_ipc_bench(argc - 2, argv + 2);
  if (scenario == "runtime") return gpubroker::bench::run_runtime_bench(argc - 2, argv + 2);
  if (scenario == "launch") return gpubroker::bench::run_launch_bench(argc - 2, argv + 2);
  fmt::print(stderr, "gpubroker-bench: unknown scenario '{}'\n", scenario);
  usage();
  return 2;
}
