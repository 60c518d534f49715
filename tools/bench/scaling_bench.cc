// gpubroker-bench scaling, wait-policies and broker-cpu: synchronous runtime calls
// (cudaStreamQuery on the default stream, through the libcudart shim) from separate client
// processes, each a fresh exec of this binary with its own session (client_processes.h).
//
//   scaling        1, 2, 4, 8, 16 clients against one broker: p50/p99/p99.9 of every call,
//                  aggregate calls/s, broker CPU per call; baselines in the same run: the raw
//                  ring round trip (a kNull call, no shim) and a Unix-socket round trip;
//                  --wait-policy=spin|adaptive|sleep starts the broker with that policy
//   wait-policies  the same at 1 and 16 clients for each broker --wait-policy (spin, adaptive,
//                  sleep), each with a broker of its own, plus the broker's CPU use while the
//                  clients are connected and idle
//   broker-cpu     one client: broker CPU time per synchronous call, and while idle
//
// Broker CPU is read from /proc/PID/task/*/schedstat of a broker the bench started; with
// --socket it is not known and reads 0.
#include <fmt/core.h>

#include <string>
#include <vector>

#include "tools/bench/baselines.h"
#include "tools/bench/bench_broker.h"
#include "tools/bench/client_processes.h"
#include "tools/bench/report.h"
#include "tools/bench/shim_library.h"

namespace gpubroker::bench {

namespace {

struct Options {
  bool json = false, quick = false;
  std::string socket;
  double seconds = 1.0;
  int max_clients = 16;
  std::vector<std::string> broker_arguments;  // --wait-policy=... for a broker the bench starts
};

Options parse(int argc, char** argv, std::string_view scenario) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") o.json = true;
    else if (arg == "--quick") o.quick = true, o.seconds = 0.2;
    else if (arg.rfind("--socket=", 0) == 0) o.socket = std::string(arg.substr(9));
    else if (arg.rfind("--seconds=", 0) == 0) o.seconds = std::stod(std::string(arg.substr(10)));
    else if (arg.rfind("--max-clients=", 0) == 0) o.max_clients = std::stoi(std::string(arg.substr(14)));
    else if (arg.rfind("--wait-policy=", 0) == 0) o.broker_arguments.emplace_back(arg);
    else fail(scenario, fmt::format("unknown option '{}'", arg));
  }
  if (o.seconds <= 0 || o.max_clients < 1) fail(scenario, "--seconds and --max-clients must be positive");
  if (!o.socket.empty() && !o.broker_arguments.empty()) fail(scenario, "--wait-policy is for a broker the bench starts");
  return o;
}

void print_row(const std::string& label, const ClientsRun& run) {
  fmt::print("  {:<22} p50 {:>8.0f} ns  p99 {:>9.0f} ns  p99.9 {:>9.0f} ns  {:>8.3f} M calls/s  broker CPU {:>6.0f} ns/call\n",
             label, run.sync_ns.p50, run.sync_ns.p99, run.sync_ns.p999, run.calls_per_s / 1e6,
             run.broker_cpu_ns_per_call);
}

}  // namespace

int run_scaling_bench(int argc, char** argv) {
  const Options o = parse(argc, argv, "scaling");
  const BenchBroker broker(o.socket, "", "scaling", o.broker_arguments);
  const std::size_t baseline_calls = o.quick ? 5'000 : 50'000;
  const Percentiles ring = ring_round_trip_ns(broker.socket(), baseline_calls);
  const Percentiles unix_socket = unix_socket_round_trip_ns(baseline_calls / 5);
  Report report;
  report.latency("ring_round_trip_ns", ring);
  report.latency("unix_socket_round_trip_ns", unix_socket);
  std::vector<std::pair<int, ClientsRun>> runs;
  for (int clients = 1; clients <= o.max_clients; clients *= 2) {
    const ClientsRun run = run_sync_clients(broker.socket(), broker.pid(), clients, o.seconds);
    report.latency(fmt::format("clients{}_sync_ns", clients), run.sync_ns);
    report.number(fmt::format("clients{}_calls_per_s", clients), run.calls_per_s);
    report.number(fmt::format("clients{}_broker_cpu_ns_per_call", clients), run.broker_cpu_ns_per_call);
    runs.emplace_back(clients, run);
  }
  if (o.json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench scaling on {} ({:.1f} s per client count, broker: {}{})\n", machine_name(), o.seconds,
             broker.started() ? "sim, started by the bench" : broker.socket(),
             o.broker_arguments.empty() ? "" : ", " + o.broker_arguments.front());
  fmt::print("synchronous runtime call (cudaStreamQuery), every call of every client process:\n");
  for (const auto& [clients, run] : runs) print_row(fmt::format("{} client(s)", clients), run);
  fmt::print("baselines: raw ring round trip p50 {:.0f} ns p99 {:.0f} ns; Unix socket round trip p50 {:.0f} ns p99 {:.0f} ns\n",
             ring.p50, ring.p99, unix_socket.p50, unix_socket.p99);
  return 0;
}

int run_wait_policy_bench(int argc, char** argv) {
  const Options o = parse(argc, argv, "wait-policies");
  if (!o.socket.empty()) fail("wait-policies", "starts a broker per policy; --socket is not accepted");
  const int many = o.max_clients;
  const double idle_seconds = o.quick ? 0.1 : 0.5;
  Report report;
  struct Row {
    std::string policy;
    ClientsRun one, many;
  };
  std::vector<Row> rows;
  for (const char* policy : {"spin", "adaptive", "sleep"}) {
    const BenchBroker broker("", "", "wait-policies", {fmt::format("--wait-policy={}", policy)});
    Row row{policy, run_sync_clients(broker.socket(), broker.pid(), 1, o.seconds, idle_seconds),
            run_sync_clients(broker.socket(), broker.pid(), many, o.seconds, idle_seconds)};
    report.latency(fmt::format("{}_clients1_sync_ns", policy), row.one.sync_ns);
    report.number(fmt::format("{}_clients1_broker_cpu_ns_per_call", policy), row.one.broker_cpu_ns_per_call);
    report.number(fmt::format("{}_clients1_idle_broker_cpu", policy), row.one.broker_idle_cpu_fraction);
    report.latency(fmt::format("{}_clients{}_sync_ns", policy, many), row.many.sync_ns);
    report.number(fmt::format("{}_clients{}_calls_per_s", policy, many), row.many.calls_per_s);
    report.number(fmt::format("{}_clients{}_broker_cpu_ns_per_call", policy, many), row.many.broker_cpu_ns_per_call);
    report.number(fmt::format("{}_clients{}_idle_broker_cpu", policy, many), row.many.broker_idle_cpu_fraction);
    rows.push_back(std::move(row));
  }
  if (o.json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench wait-policies on {} ({:.1f} s per run, sim broker per policy)\n", machine_name(), o.seconds);
  for (const Row& row : rows) {
    fmt::print("{}: broker CPU while clients idle: {:.0f}% (1 client), {:.0f}% ({} clients)\n", row.policy,
               row.one.broker_idle_cpu_fraction * 100, row.many.broker_idle_cpu_fraction * 100, many);
    print_row("1 client", row.one);
    print_row(fmt::format("{} clients", many), row.many);
  }
  return 0;
}

int run_broker_cpu_bench(int argc, char** argv) {
  const Options o = parse(argc, argv, "broker-cpu");
  const BenchBroker broker(o.socket, "", "broker-cpu");
  if (!broker.started()) fail("broker-cpu", "reads the CPU time of a broker it starts; --socket is not accepted");
  const ClientsRun run = run_sync_clients(broker.socket(), broker.pid(), 1, o.seconds, o.quick ? 0.1 : 0.5);
  Report report;
  report.latency("sync_call_ns", run.sync_ns);
  report.number("calls", static_cast<double>(run.calls));
  report.number("broker_cpu_ns_per_call", run.broker_cpu_ns_per_call);
  report.number("broker_cpu_over_latency", run.broker_cpu_ns_per_call / run.sync_ns.p50);
  report.number("idle_broker_cpu", run.broker_idle_cpu_fraction);
  if (o.json) {
    fmt::print("{}\n", report.json());
    return 0;
  }
  fmt::print("gpubroker-bench broker-cpu on {} (one client process, {} synchronous calls)\n", machine_name(), run.calls);
  fmt::print("  broker CPU per call: {:.0f} ns (call p50 {:.0f} ns); broker CPU while the client idles: {:.1f}%\n",
             run.broker_cpu_ns_per_call, run.sync_ns.p50, run.broker_idle_cpu_fraction * 100);
  return 0;
}

}  // namespace gpubroker::bench
