// shim/abi/gen_exports.py on small samples and on the real symbols files, and the once-per-process
// log of shim/abi/unsupported.cc that every generated stub calls.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "shim/abi/unsupported.h"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// A scratch directory removed at the end of the test.
struct ScratchDirectory {
  ScratchDirectory() {
    char pattern[] = "/tmp/gpubroker-exports-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~ScratchDirectory() { fs::remove_all(path); }
  fs::path path;
};

// Runs the generator; returns its exit status, with its stderr in `errors`.
int generate(const ScratchDirectory& dir, const std::string& arguments, std::string& errors) {
  const fs::path stderr_file = dir.path / "stderr.txt";
  const std::string command = std::string(GPUBROKER_PYTHON3) + " " + GPUBROKER_GEN_EXPORTS + " " +
                              arguments + " --version-script " + (dir.path / "out.map").string() +
                              " --stubs " + (dir.path / "out.cc").string() + " 2> " +
                              stderr_file.string();
  const int status = std::system(command.c_str());
  errors = read_file(stderr_file);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char* const kRequired13 =
    "cudaGetErrorName\ncudaGetErrorString\ncudaCreateChannelDesc\n__cudaRegisterFatBinary\n"
    "__cudaInitModule\n__cudaPushCallConfiguration\n";

}  // namespace

TEST_CASE("the generator exports every name and stubs exactly the unimplemented ones",
          "[cuda_abi][exports]") {
  ScratchDirectory dir;
  write_file(dir.path / "sample.symbols", "cudaFree\ncudaGetErrorString\ncudaMalloc\n");
  write_file(dir.path / "implemented.txt",
             "# served by the shim\ncudaMalloc\n\ncudaGetErrorString\n");
  std::string errors;
  REQUIRE(generate(dir,
                   "--symbols " + (dir.path / "sample.symbols").string() +
                       " --node libcudart.so.13 --implemented " +
                       (dir.path / "implemented.txt").string(),
                   errors) == 0);
  CHECK(errors.empty());

  const std::string map = read_file(dir.path / "out.map");
  CHECK(map.find("libcudart.so.13 {\n  global:\n    cudaFree;\n    cudaGetErrorString;\n"
                 "    cudaMalloc;\n  local: *;\n};\n") != std::string::npos);

  const std::string stubs = read_file(dir.path / "out.cc");
  CHECK(stubs.find("#include \"shim/abi/unsupported.h\"") != std::string::npos);
  CHECK(stubs.find("GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(cudaFree)") != std::string::npos);
  CHECK(stubs.find("GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(cudaMalloc)") == std::string::npos);
  CHECK(stubs.find("GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(cudaGetErrorString)") == std::string::npos);
}

TEST_CASE("the generator refuses to stub a function that returns a pointer",
          "[cuda_abi][exports]") {
  ScratchDirectory dir;
  write_file(dir.path / "sample.symbols", "cudaGetErrorString\ncudaMalloc\n");
  write_file(dir.path / "implemented.txt", "cudaMalloc\n");
  std::string errors;
  CHECK(generate(dir,
                 "--symbols " + (dir.path / "sample.symbols").string() +
                     " --node libcudart.so.13 --implemented " +
                     (dir.path / "implemented.txt").string(),
                 errors) != 0);
  CHECK(errors.find("cudaGetErrorString") != std::string::npos);
}

TEST_CASE("a name in the implemented list that no runtime exports is an error, not a stub",
          "[cuda_abi][exports]") {
  ScratchDirectory dir;
  write_file(dir.path / "implemented.txt", std::string(kRequired13) + "cudaMallocc\n");
  std::string errors;
  CHECK(generate(dir,
                 std::string("--symbols ") + GPUBROKER_CUDART13_SYMBOLS +
                     " --node libcudart.so.13 --implemented " +
                     (dir.path / "implemented.txt").string(),
                 errors) != 0);
  CHECK(errors.find("cudaMallocc") != std::string::npos);
}

TEST_CASE("one implemented list serves both runtimes when each knows the other's names",
          "[cuda_abi][exports]") {
  ScratchDirectory dir;
  // cudaGetDeviceProperties_v2 exists only in 12, cudaLogsCurrent only in 13.
  write_file(dir.path / "implemented.txt",
             std::string(kRequired13) + "cudaGetDeviceProperties_v2\ncudaLogsCurrent\n");
  std::string errors;
  REQUIRE(generate(dir,
                   std::string("--symbols ") + GPUBROKER_CUDART13_SYMBOLS +
                       " --node libcudart.so.13 --known " + GPUBROKER_CUDART12_SYMBOLS +
                       " --implemented " + (dir.path / "implemented.txt").string(),
                   errors) == 0);
  const std::string stubs = read_file(dir.path / "out.cc");
  // 422 exports of 13.0, 7 of them implemented.
  std::size_t count = 0;
  for (std::size_t at = stubs.find("GPUBROKER_UNSUPPORTED_CUDA_FUNCTION("); at != std::string::npos;
       at = stubs.find("GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(", at + 1)) {
    ++count;
  }
  CHECK(count == 422 - 7);
  CHECK(read_file(dir.path / "out.map").find("libcudart.so.13 {") != std::string::npos);
}

// The stub shape, defined here as the generated file defines it.
GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(gpubrokerTestUnsupportedCall)

TEST_CASE("an unsupported call returns cudaErrorNotSupported and logs its name once",
          "[cuda_abi][exports]") {
  ScratchDirectory dir;
  const fs::path log = dir.path / "stderr.txt";
  const int saved = dup(STDERR_FILENO);
  const int file = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(file >= 0);
  dup2(file, STDERR_FILENO);

  // Called as a caller of the real function would: with arguments the stub ignores. Casting
  // through void(*)() is how one function pointer type becomes another without a warning.
  using WithArguments = int (*)(void**, unsigned long, int);
  auto call = reinterpret_cast<WithArguments>(
      reinterpret_cast<void (*)()>(&gpubrokerTestUnsupportedCall));
  void* pointer = nullptr;
  const int first = call(&pointer, 4096, 3);
  const int second = call(&pointer, 4096, 3);
  gpubroker_log_unsupported_once("gpubrokerTestOtherCall");
  gpubroker_log_unsupported_once("gpubrokerTestOtherCall");

  dup2(saved, STDERR_FILENO);
  close(saved);
  close(file);
  CHECK(first == 801);
  CHECK(second == 801);
  const std::string text = read_file(log);
  std::istringstream lines(text);
  int line_count = 0;
  for (std::string line; std::getline(lines, line);) ++line_count;
  CHECK(line_count == 2);
  CHECK(text.find("gpubrokerTestUnsupportedCall is not supported") != std::string::npos);
  CHECK(text.find("gpubrokerTestOtherCall is not supported") != std::string::npos);
}
