// gpubroker-bench: the project's benchmarks. Each scenario measures the brokered path and a
// baseline in the same run and prints p50/p99/p99.9 and ratios, naming the machine.
#include <fmt/core.h>

#include <cstring>
#include <string_view>

namespace gpubroker::bench {
int run_ipc_bench(int argc, char** argv);
int run_runtime_bench(int argc, char** argv);
int run_launch_bench(int argc, char** argv);
int run_graph_bench(int argc, char** argv);
int run_copy_bench(int argc, char** argv);
int run_first_call_bench(int argc, char** argv);
int run_discovery_bench(int argc, char** argv);
int run_scaling_bench(int argc, char** argv);
int run_wait_policy_bench(int argc, char** argv);
int run_broker_cpu_bench(int argc, char** argv);
int run_child(int argc, char** argv);
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
      "  launch    kernel launches per second through the shim, against null transport messages\n"
      "  graph     CUDA graph launches (--nodes=N kernels each) against the same kernels launched one by one\n"
      "  copies    cudaMemcpy by size, pageable and pinned, against memcpy (--max-size=SIZE, default 64M, up to 1G)\n"
      "  first-call  process start to the first successful cudaMalloc, fresh processes (--runs=N)\n"
      "  discovery   process start to the end of an Ollama-style discovery pass (libcudart, libcuda, NVML)\n"
      "  scaling   1..16 client processes: sync call p50/p99, calls/s, broker CPU per call\n"
      "            (--seconds=S per client count, --max-clients=N, --wait-policy=P); ring and socket baselines\n"
      "  wait-policies  spin, adaptive and sleep brokers at 1 and 16 clients: latency against broker CPU\n"
      "  broker-cpu     broker CPU time per synchronous call, and while a client idles\n"
      "  (every scenario but ipc, wait-policies and broker-cpu takes --socket=PATH to use a running broker)\n"
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
  if (scenario == "graph") return gpubroker::bench::run_graph_bench(argc - 2, argv + 2);
  if (scenario == "copies") return gpubroker::bench::run_copy_bench(argc - 2, argv + 2);
  if (scenario == "first-call") return gpubroker::bench::run_first_call_bench(argc - 2, argv + 2);
  if (scenario == "discovery") return gpubroker::bench::run_discovery_bench(argc - 2, argv + 2);
  if (scenario == "scaling") return gpubroker::bench::run_scaling_bench(argc - 2, argv + 2);
  if (scenario == "wait-policies") return gpubroker::bench::run_wait_policy_bench(argc - 2, argv + 2);
  if (scenario == "broker-cpu") return gpubroker::bench::run_broker_cpu_bench(argc - 2, argv + 2);
  if (scenario == "--child") return gpubroker::bench::run_child(argc - 2, argv + 2);  // client_processes.h
  fmt::print(stderr, "gpubroker-bench: unknown scenario '{}'\n", scenario);
  usage();
  return 2;
}
