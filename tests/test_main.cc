// The main of every Catch2 test binary: Catch2's own, with the skips of tests/support/skip.h turned
// into the exit status meson reads (77: skipped) when every test case that ran was skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <iostream>

#include "tests/support/skip.h"

namespace {

struct CaseCounter : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    ++gpubroker::testing::skip_report().cases_run;
    TestEventListenerBase::testCaseEnded(stats);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(CaseCounter)

int main(int argc, char* argv[]) {
  const int status = Catch::Session().run(argc, argv);
  const gpubroker::testing::SkipReport& report = gpubroker::testing::skip_report();
  if (status != 0 || report.skipped.empty()) return status;
  std::cout << "SKIP: " << report.skipped.size() << " of " << report.cases_run
            << " test cases could not check what they name:\n";
  for (const std::string& name : report.skipped) std::cout << "  " << name << "\n";
  std::cout << std::flush;
  return report.skipped.size() == report.cases_run ? 77 : 0;
}
