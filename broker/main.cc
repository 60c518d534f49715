// gpu-broker: the resident daemon. Opens the device layer (the real driver or the sim driver),
// listens on its Unix socket, serves each client session on a thread of its own, tells systemd
// when it is ready and when it stops. SIGTERM or SIGINT: stop accepting, let every session finish
// the request in hand and reclaim what it held, exit 0. `gpu-broker cdi-spec` prints the CDI
// specification of the devices it would serve instead (broker/cdi_spec.h).
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "broker/cdi_spec.h"
#include "broker/device_layer.h"
#include "broker/metrics.h"
#include "broker/options.h"
#include "broker/session.h"
#include "broker/stats.h"
#include "ipc/log.h"
#include "ipc/server_session.h"
#include "ipc/transport_service.h"

namespace {

using namespace gpubroker;

std::atomic<bool> g_stop{false};

void on_stop_signal(int) { g_stop.store(true); }

bool is_transport_kind(std::uint16_t kind) { return kind < static_cast<std::uint16_t>(wire::kFirstDeviceKind); }

}  // namespace

int main(int argc, char** argv) {
  const broker::ParsedOptions parsed = broker::parse_options(argc, argv);
  if (!parsed.error.empty()) {
    fmt::print(stderr, "gpu-broker: {}\n{}", parsed.error, broker::usage_text());
    return 2;
  }
  if (parsed.help) {
    fmt::print("{}", broker::usage_text());
    return 0;
  }
  if (parsed.version) {
    fmt::print("gpu-broker {} (protocol {}, fingerprint {:016x})\n", GPUBROKER_VERSION, wire::kProtocolVersion,
               wire::kProtocol.fingerprint);
    return 0;
  }
  const broker::BrokerOptions& options = parsed.options;
  ipc::set_log_level(options.log_level);
  if (parsed.command == broker::Command::kCdiSpec) return broker::print_cdi_spec(options, parsed.shim_directory, GPUBROKER_VERSION);

  auto device = broker::DeviceLayer::open(options.driver, options.sim_library, broker::SimSettings{options.sim_devices, options.sim_kernels, options.sim_discover});
  if (!device) {
    ipc::log(ipc::LogLevel::kError, "no usable driver: {}", device.error().detail);
    sd_notifyf(0, "STATUS=no usable driver: %s", device.error().detail.c_str());
    return 1;
  }
  const broker::DeviceLayer& layer = *device.value();
  ipc::log(ipc::LogLevel::kInfo, "driver: {} ({}), {} device(s)", broker::to_string(layer.kind()), layer.library(),
           layer.devices().count);
  for (std::uint32_t i = 0; i < layer.devices().count; ++i) {
    const wire::DeviceRecord& d = layer.devices().devices[i];
    ipc::log(ipc::LogLevel::kInfo, "device {}: {} ({} MiB, PCI {})", i, d.name, d.total_bytes >> 20, d.pci_bus_id);
  }
  if (options.sim_devices && layer.kind() != broker::DriverKind::kSim) {
    ipc::log(ipc::LogLevel::kWarning, "--sim-devices={} ignored: the {} driver serves the host's own devices",
             *options.sim_devices, broker::to_string(layer.kind()));
  }

  std::error_code ignored;
  std::filesystem::create_directories(std::filesystem::path(options.socket_path).parent_path(), ignored);
  ipc::ListenerOptions listener_options;
  listener_options.socket_path = options.socket_path;
  listener_options.protocol = wire::kProtocol;  // every kind of both call tables
  listener_options.policy.uids = options.allowed_uids;
  listener_options.policy.gids = options.allowed_gids;
  listener_options.pipe_bytes = options.pipe_bytes;
  listener_options.arena_bytes = options.arena_bytes;
  listener_options.limits = options.limits;
  const broker::Isolation isolation = options.isolation;
  listener_options.prepare_control = [&layer, isolation](wire::ControlSegment& control, const wire::Hello&,
                                                         const ipc::PeerCredentials&) {
    control.devices = layer.devices();
    // A VMM mapping belongs to the process, not to a context: every context of the broker could
    // reach it. So with contexts per user the broker serves no VMM, and says so as a device
    // without it would (ggml then allocates with cudaMalloc).
    if (isolation == broker::Isolation::kUid) {
      for (wire::DeviceRecord& device : control.devices.devices) {
        device.attributes[cuda::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED] = 0;
      }
    }
  };
  // The socket is made with its mode (the umask around bind), so that no client outside it can
  // connect before a chmod; the chmod then sets it whatever the umask had kept.
  const mode_t umask_before = ::umask(0777 & ~options.socket_mode);
  auto listener = ipc::Listener::bind(listener_options);
  ::umask(umask_before);
  if (!listener) {
    ipc::log(ipc::LogLevel::kError, "cannot listen on {}: {}", options.socket_path, ipc::describe(listener.error()));
    return 1;
  }
  if (::chmod(options.socket_path.c_str(), options.socket_mode) != 0) {
    ipc::log(ipc::LogLevel::kError, "cannot set the mode of {} to {:04o}: {}", options.socket_path, options.socket_mode,
             std::strerror(errno));
    return 1;
  }

  struct sigaction action{};
  action.sa_handler = on_stop_signal;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // A traced session's file (session_timeline.h) that grows past a file size limit fails its write
  // (EFBIG) instead of killing the broker.
  ::signal(SIGXFSZ, SIG_IGN);

  auto stats = broker::StatsPublisher::create(broker::stats_path_for(options.socket_path), layer);
  if (!stats) {
    ipc::log(ipc::LogLevel::kError, "cannot publish stats beside {}: {}", options.socket_path, ipc::describe(stats.error()));
    return 1;
  }
  broker::StatsPublisher& publisher = *stats.value();
  std::unique_ptr<broker::MetricsServer> metrics;
  if (!options.metrics_listen.empty()) {
    auto started = broker::MetricsServer::start(*broker::parse_listen_address(options.metrics_listen), publisher.path(),
                                                GPUBROKER_VERSION);
    if (!started) {
      ipc::log(ipc::LogLevel::kError, "cannot serve metrics on {}: {}", options.metrics_listen, ipc::describe(started.error()));
      return 1;
    }
    metrics = std::move(started.value());
    ipc::log(ipc::LogLevel::kInfo, "metrics at http://{}/metrics (port {})", options.metrics_listen, metrics->port());
  }

  broker::BrokerCounters counters;
  const broker::SessionLimits limits{options.session_memory_limit, options.session_host_memory_limit};
  auto make_handler = [&](const ipc::ServerSession& accepted) -> ipc::RequestHandler {
    // The transport's own kinds: only those that hold nothing (the staging tests' are not served).
    auto transport = ipc::make_transport_handler(ipc::TransportKinds::kProduction);
    auto contexts = layer.contexts_for(isolation, accepted.peer().uid);
    if (!contexts) {
      // No context of its own for this user (device memory, most likely): every device call of
      // the session fails, none runs anywhere else.
      ipc::log(ipc::LogLevel::kError, "session {}: {}", accepted.id(), contexts.error().detail);
      return [transport](ipc::ServerSession& session, const wire::RequestSlot& request) -> ipc::Result<void> {
        if (is_transport_kind(request.header.kind)) return transport(session, request);
        if ((request.header.flags & wire::kSynchronous) != 0) session.complete(request.header, cuda::CUDA_ERROR_OUT_OF_MEMORY);
        return boost::outcome_v2::success();
      };
    }
    auto device_session = std::make_shared<broker::DeviceSession>(layer, std::move(contexts.value()), limits, counters);
    auto writer = std::make_shared<broker::SessionStatsWriter>(publisher.open_session(
        accepted.id(), accepted.hello().pid, accepted.hello().abi, accepted.hello().program));
    // Every synchronous request is timed for the latency histogram; of the posted ones (launches,
    // async copies), which nobody waits for and which come by the million, one in kPostedSample:
    // two clock reads per launch were the broker's largest cost on the sim's launch path.
    constexpr std::uint32_t kPostedSample = 64;
    return [device_session, transport, writer, posted = std::uint32_t{0}, first = true](
               ipc::ServerSession& session, const wire::RequestSlot& request) mutable {
      if (first) {  // on the session's thread: the trace file is checked here (take_trace_file)
        first = false;
        if (ipc::UniqueFd trace_file = session.take_trace_file(); trace_file.get() >= 0) {
          device_session->timeline().open(std::move(trace_file));
        }
      }
      if (is_transport_kind(request.header.kind)) return transport(session, request);
      const bool timed = (request.header.flags & wire::kSynchronous) != 0 || posted++ % kPostedSample == 0;
      const std::int64_t start = timed ? ipc::monotonic_ns() : 0;
      auto handled = device_session->handle(session, request);
      const auto traffic = device_session->take_traffic();
      writer->record_call(request.header.kind, timed ? ipc::monotonic_ns() - start : -1, device_session->last_call_failed(),
                          traffic.to_device, traffic.from_device, device_session->device_bytes(),
                          device_session->pinned_bytes());
      return handled;
    };
  };
  const std::int64_t linger_ns = static_cast<std::int64_t>(options.context_linger_seconds) * 1'000'000'000;
  std::thread heartbeat([&] {
    while (!g_stop.load()) {
      std::array<std::uint64_t, wire::kMaxDevices> used{};
      for (std::size_t d = 0; d < used.size(); ++d) used[d] = counters.device_bytes_on[d].load(std::memory_order_relaxed);
      // The driver's view of each device, through its primary context (the device layer).
      std::array<std::uint64_t, wire::kMaxDevices> driver_used{};
      for (std::uint32_t d = 0; d < layer.devices().count && d < driver_used.size(); ++d) {
        std::size_t free = 0, total = 0;
        if (layer.context(d).mem_get_info(&free, &total) == cuda::CUDA_SUCCESS && total >= free) driver_used[d] = total - free;
      }
      publisher.heartbeat(used, driver_used);
      if (std::size_t released = layer.release_idle_contexts(ipc::monotonic_ns(), linger_ns); released != 0) {
        ipc::log(ipc::LogLevel::kInfo, "released the contexts of {} user(s) without a session", released);
      }
      for (int i = 0; i < 10 && !g_stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  ipc::log(ipc::LogLevel::kInfo, "listening on {} (wait policy {})", options.socket_path,
           options.wait == ipc::WaitMode::kSpin ? "spin" : options.wait == ipc::WaitMode::kSleep ? "sleep" : "adaptive");
  sd_notifyf(0, "READY=1\nSTATUS=serving %u device(s) with the %s driver on %s", layer.devices().count,
             broker::to_string(layer.kind()), options.socket_path.c_str());

  ipc::run_sessions(listener.value(), make_handler, ipc::WaitPolicy::of(options.wait), g_stop,
                    [&publisher](const ipc::SessionReport& report) {
                      if (report.end == ipc::SessionEnd::kViolation) publisher.count_violation();
                    });
  heartbeat.join();

  sd_notify(0, "STOPPING=1\nSTATUS=stopped");
  ::unlink(options.socket_path.c_str());
  ipc::log(ipc::LogLevel::kInfo, "stopped");
  return 0;
}
