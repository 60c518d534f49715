// Test support: a Catch2 test case that cannot check what it names (a tool, a header or a library
// this machine lacks, or a privilege the test does not have) reports SKIP, never a pass.
//
//   TEST_CASE("modules load from nvcc's fatbins", "[sim][nvcc]") {
//     if (!SIM_HAVE_NVCC) SKIP_CASE("nvcc was not found at configure time");
//     ...
//   }
//
// Catch2 3.3 has SKIP(); the Catch2 the project builds with (2.13, Debian 12's) does not. So
// SKIP_CASE prints "SKIP: <test case>: <why>" and returns from the test case: use it in the body
// of a TEST_CASE (or of one of its SECTIONs), never in a function it calls. test_main.cc's main
// then exits with 77, meson's "skipped", when every test case that ran was skipped, and lists the
// skipped cases when some others checked. So a check that needs a tool gets a tag of its own and
// a meson test that selects that tag ('[nvcc]'), beside the one that excludes it ('~[nvcc]~[.]':
// in Catch2 2.13 an exclusion alone also selects the hidden cases), and shows as SKIP in
// `meson test` where the tool is missing.
#pragma once

#include <catch2/catch.hpp>
#include <cstddef>
#include <iostream>
#include <set>
#include <sstream>
#include <string>

namespace gpubroker::testing {

// What the test cases of this process reported; read by main() after the run. One thread: Catch2
// runs the cases one after another on the main thread.
struct SkipReport {
  std::set<std::string> skipped;  // test case names
  std::size_t cases_run = 0;      // counted by test_main.cc's listener
};

inline SkipReport& skip_report() {
  static SkipReport report;
  return report;
}

inline void record_skip(const std::string& reason) {
  const std::string name = Catch::getResultCapture().getCurrentTestName();
  skip_report().skipped.insert(name);
  std::cout << "SKIP: " << name << ": " << reason << std::endl;
}

}  // namespace gpubroker::testing

// The message streams as Catch2's do: SKIP_CASE("no " << path).
#define SKIP_CASE(message)                                        \
  do {                                                            \
    std::ostringstream gpubroker_skip_reason;                     \
    gpubroker_skip_reason << message;                             \
    ::gpubroker::testing::record_skip(gpubroker_skip_reason.str()); \
    return;                                                       \
  } while (false)
