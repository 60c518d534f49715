// The CDI specification writer and the cdi-spec command line, without a broker: which socket and
// shim paths may be handed to containers, how the YAML quotes what it writes, which devices it
// names and in what order. tests/package/cdi_spec_test.py checks a real broker's specification
// against the CDI rules; this checks what that one cannot reach.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "broker/cdi_spec.h"
#include "broker/options.h"

using namespace gpubroker::broker;

namespace {

CdiSpecInput input_for(const std::string& socket) {
  CdiSpecInput input;
  input.socket_path = socket;
  input.shim_directory = "/usr/lib/x86_64-linux-gnu/gpubroker";
  input.shim_libraries = {"/usr/lib/x86_64-linux-gnu/gpubroker/libcuda.so.1",
                          "/usr/lib/x86_64-linux-gnu/gpubroker/libcudart.so.13"};
  input.device_uuids = {"GPU-00000000-0000-0000-0000-000000000001", "GPU-00000000-0000-0000-0000-000000000002"};
  input.origin = "first line\nsecond line";
  return input;
}

ParsedOptions parse(std::vector<std::string> arguments) {
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("a socket whose directory is the broker's own may be handed to containers", "[cdi]") {
  CHECK(cdi_input_problem(input_for("/run/gpu-broker/broker.sock")).empty());
  CHECK(cdi_input_problem(input_for("/run/user/1000/gpu-broker/broker.sock")).empty());
  CHECK(cdi_input_problem(input_for("/tmp/gpubroker-test/broker.sock")).empty());
}

TEST_CASE("a socket in a directory shared with other things is refused", "[cdi]") {
  for (const char* socket : {"/broker.sock", "/run/broker.sock", "/tmp/broker.sock", "/run/user/1000/gpu-broker.sock"}) {
    INFO(socket);
    CHECK_THAT(cdi_input_problem(input_for(socket)), Catch::Contains("directory of its own"));
  }
}

TEST_CASE("relative paths and paths LD_PRELOAD would split are refused", "[cdi]") {
  CHECK_THAT(cdi_input_problem(input_for("run/gpu-broker/broker.sock")), Catch::Contains("not absolute"));
  CdiSpecInput relative_shims = input_for("/run/gpu-broker/broker.sock");
  relative_shims.shim_directory = "lib/gpubroker";
  CHECK_THAT(cdi_input_problem(relative_shims), Catch::Contains("not absolute"));
  for (const char* library : {"/opt/a:b/libcuda.so.1", "/opt/a b/libcuda.so.1"}) {
    CdiSpecInput split = input_for("/run/gpu-broker/broker.sock");
    split.shim_libraries.push_back(library);
    CHECK_THAT(cdi_input_problem(split), Catch::Contains("separator"));
  }
}

TEST_CASE("the specification names all, each index and each UUID, in that order", "[cdi]") {
  const std::string yaml = cdi_spec_yaml(input_for("/run/gpu-broker/broker.sock"));
  const auto all = yaml.find("- name: \"all\"");
  const auto first = yaml.find("- name: \"0\"");
  const auto second = yaml.find("- name: \"1\"");
  const auto uuid = yaml.find("- name: \"GPU-00000000-0000-0000-0000-000000000001\"");
  REQUIRE(all != std::string::npos);
  CHECK(all < first);
  CHECK(first < second);
  CHECK(second < uuid);
  CHECK(uuid != std::string::npos);
  CHECK_THAT(yaml, Catch::Contains("\"CUDA_VISIBLE_DEVICES=0,1\""));
  CHECK_THAT(yaml, Catch::Contains(
      "\"LD_PRELOAD=/usr/lib/x86_64-linux-gnu/gpubroker/libcuda.so.1:/usr/lib/x86_64-linux-gnu/gpubroker/libcudart.so.13\""));
  CHECK_THAT(yaml, Catch::Contains("# first line\n# second line\n"));
  CHECK_THAT(yaml, Catch::Contains("cdiVersion: \"0.5.0\"\nkind: \"gpubroker.io/gpu\"\n"));
}

TEST_CASE("quotes, backslashes and control characters in a path are escaped as YAML reads them", "[cdi]") {
  const std::string yaml = cdi_spec_yaml(input_for("/run/a\"b\\c\nd/broker.sock"));
  CHECK_THAT(yaml, Catch::Contains("\"GPUBROKER_SOCKET=/run/a\\\"b\\\\c\\x0ad/broker.sock\""));
  CHECK_THAT(yaml, Catch::Contains("hostPath: \"/run/a\\\"b\\\\c\\x0ad\""));
}

TEST_CASE("cdi-spec takes --shim-dir beside the broker's own options, and only it does", "[cdi][options]") {
  const ParsedOptions spec = parse({"gpu-broker", "cdi-spec", "--shim-dir=/opt/shims", "--sim-devices=2", "--driver=sim"});
  CHECK(spec.error.empty());
  CHECK(spec.command == Command::kCdiSpec);
  CHECK(spec.shim_directory == "/opt/shims");
  CHECK(spec.options.sim_devices == 2u);
  const ParsedOptions serve = parse({"gpu-broker", "--shim-dir=/opt/shims"});
  CHECK(serve.command == Command::kServe);
  CHECK_THAT(serve.error, Catch::Contains("unknown option 'shim-dir'"));
}
