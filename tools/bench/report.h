// What every gpubroker-bench scenario prints: percentiles of a latency sample, rates, ratios
// against a baseline measured in the same run, the machine's name, as text or as one JSON line.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gpubroker::bench {

struct Percentiles {
  double p50 = 0, p99 = 0, p999 = 0;
};

// Sorts `samples` and reads the percentiles off it.
Percentiles percentiles(std::vector<double>& samples);

// "hostname: CPU model, N cores"
std::string machine_name();

double median(std::vector<double> values);

// A flat report: named latency distributions and named numbers, printed in insertion order.
class Report {
 public:
  void latency(std::string key, const Percentiles& p) { latencies_.emplace_back(std::move(key), p); }
  void number(std::string key, double value) { numbers_.emplace_back(std::move(key), value); }

  // {"machine": "...", "results": {"key": {"p50":..,"p99":..,"p999":..}, "key": value, ...}}
  [[nodiscard]] std::string json() const;

 private:
  std::vector<std::pair<std::string, Percentiles>> latencies_;
  std::vector<std::pair<std::string, double>> numbers_;
};

}  // namespace gpubroker::bench
