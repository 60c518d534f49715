#include "tools/bench/report.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace gpubroker::bench {

Percentiles percentiles(std::vector<double>& samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1));
    return samples[i];
  };
  return {at(0.50), at(0.99), at(0.999)};
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string machine_name() {
  char host[256] = "unknown";
  ::gethostname(host, sizeof(host) - 1);
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return fmt::format("{}: {}, {} cores", host, model, std::thread::hardware_concurrency());
}

std::string Report::json() const {
  std::string out = fmt::format("{{\"machine\": \"{}\", \"results\": {{", machine_name());
  bool first = true;
  auto separator = [&] { return std::exchange(first, false) ? "" : ", "; };
  for (const auto& [key, p] : latencies_) {
    out += fmt::format("{}\"{}\": {{\"p50\": {:.1f}, \"p99\": {:.1f}, \"p999\": {:.1f}}}", separator(),
                       key, p.p50, p.p99, p.p999);
  }
  for (const auto& [key, value] : numbers_) out += fmt::format("{}\"{}\": {:.6g}", separator(), key, value);
  return out + "}}";
}

}  // namespace gpubroker::bench
