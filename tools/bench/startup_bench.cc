// gpubroker-bench first-call and discovery: what a runner pays before its first useful call, each
// run a fresh process (a new exec of this binary that loads the shims cold, as a runner does).
//
//   first-call  process start (just before fork) to the first successful cudaMalloc
//   discovery   process start to the end of an Ollama-style discovery pass through libcudart,
//               libcuda and NVML: counts, properties, PCI id, memory, name, UUID of every device
//               (tests/programs/discovery.cc checks that the libraries agree; this times it)
//
// Baseline in the same run: the same fresh process that reports as soon as its main() runs
// (fork, exec and the loader: the floor any runner pays).
#include <fmt/core.h>

#include <string>
#include <vector>

#include "tools/bench/bench_broker.h"
#include "tools/bench/client_processes.h"
#include "tools/bench/report.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

namespace {

int run_startup(int argc, char** argv, const char* scenario, const char* mode, const std::string& key) {
  bool json = false;
  std::string socket;
  int runs = 20;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--quick") runs = 5;
    else if (arg.rfind("--socket=", 0) == 0) socket = std::string(arg.substr(9));
    else if (arg.rfind("--runs=", 0) == 0) runs = std::stoi(std::string(arg.substr(7)));
    else fail(scenario, fmt::format("unknown option '{}'", arg));
  }
  if (runs < 1) fail(scenario, "--runs must be positive");
  const BenchBroker broker(socket, "", scenario);
  (void)fresh_process_ms(broker.socket(), mode, 1);  // the page cache, not the first run, is what we time
  std::vector<double> measured = fresh_process_ms(broker.socket(), mode, runs);
  std::vector<double> floor = fresh_process_ms(broker.socket(), "start-only", runs);
  std::vector<double> measured_us;
  for (double ms : measured) measured_us.push_back(ms * 1e3);
  const Percentiles p = percentiles(measured_us);
  const double measured_ms = p.p50 / 1e3, floor_ms = percentiles(floor).p50;
  Report report;
  report.latency(key + "_us", p);
  report.number(key + "_ms", measured_ms);
  report.number("process_start_ms", floor_ms);
  report.number(key + "_minus_process_start_ms", measured_ms - floor_ms);
  if (json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench {} on {} ({} fresh processes, broker: {})\n", scenario, machine_name(), runs,
             broker.started() ? "sim, started by the bench" : broker.socket());
  fmt::print("  {}: p50 {:.3f} ms, p99 {:.3f} ms (of {} runs)\n", key, measured_ms, p.p99 / 1e3, runs);
  fmt::print("  baseline, process start to main(): p50 {:.3f} ms; the shims' share of the p50: {:.3f} ms\n", floor_ms,
             measured_ms - floor_ms);
  return 0;
}

}  // namespace

int run_first_call_bench(int argc, char** argv) {
  return run_startup(argc, argv, "first-call", "first-call", "first_call");
}

int run_discovery_bench(int argc, char** argv) {
  return run_startup(argc, argv, "discovery", "discovery", "discovery");
}

}  // namespace gpubroker::bench
