// libgpubroker-client: the one connection every shim of a process shares. Lazy connection,
// CUDA_VISIBLE_DEVICES, fork, and an unreachable broker. Connection is process-wide state, so
// each scenario runs in a child process of its own.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "gpubroker/calls/protocol.h"
#include "ipc/system.h"
#include "shim/client/connection.h"
#include "shim/client/visible_devices.h"
#include "tests/support/broker_process.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::TempDir;

namespace {

wire::DeviceTable three_devices() {
  wire::DeviceTable table{};
  table.count = 3;
  for (std::uint8_t i = 0; i < 3; ++i) {
    for (std::uint8_t b = 0; b < 16; ++b) table.devices[i].uuid[b] = static_cast<std::uint8_t>(0x10 * (i + 1) + b);
    table.devices[i].ordinal = i;
  }
  table.devices[2].uuid[0] = 0x10;  // devices 0 and 2 share the prefix "GPU-10"
  return table;
}

using List = std::vector<std::uint32_t>;

// Runs `body` in a child with the given environment; the child's exit status is the result.
int in_child(std::vector<std::pair<const char*, const char*>> environment, const std::function<int()>& body) {
  return testing::wait_for_child(testing::run_in_child([&] {
    for (const auto& [name, value] : environment) {
      if (value != nullptr) ::setenv(name, value, 1);
      else ::unsetenv(name);
    }
    return body();
  }));
}

}  // namespace

TEST_CASE("a device UUID prints as nvidia-smi prints it", "[client][devices]") {
  const std::uint8_t uuid[16] = {0x8f, 0x6d, 0x1e, 0x52, 0x03, 0x9c, 0x4b, 0x1a, 0x9e, 0x0f, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55};
  CHECK(shim::uuid_string(uuid) == "GPU-8f6d1e52-039c-4b1a-9e0f-001122334455");
}

TEST_CASE("CUDA_VISIBLE_DEVICES selects and orders devices by index and by UUID prefix", "[client][devices]") {
  const wire::DeviceTable table = three_devices();
  const std::string uuid1 = shim::uuid_string(table.devices[1].uuid);
  CHECK(shim::visible_devices(table, std::nullopt) == List{0, 1, 2});
  CHECK(shim::visible_devices(table, "") == List{});
  CHECK(shim::visible_devices(table, "2,0") == List{2, 0});
  CHECK(shim::visible_devices(table, " 1 , 2 ") == List{1, 2});
  CHECK(shim::visible_devices(table, uuid1) == List{1});
  CHECK(shim::visible_devices(table, uuid1.substr(0, 8)) == List{1});        // unique prefix
  CHECK(shim::visible_devices(table, "GPU-10") == List{});                    // ambiguous: 0 and 2
  CHECK(shim::visible_devices(table, "0,7,1") == List{0});                    // stops at a bad entry
  CHECK(shim::visible_devices(table, "1,1") == List{1});                      // and at a repeat
  CHECK(shim::visible_devices(table, "GPU-ffff") == List{});
  CHECK(shim::visible_devices(table, "-1") == List{});
  CHECK(shim::visible_devices(table, "1," + uuid1) == List{1});
}

TEST_CASE("a process connects on first use and sees the broker's devices", "[client][connection]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {}, .environment = {{"GPUBROKER_SIM_DEVICES", "3"}}});
  CHECK(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}, {"CUDA_VISIBLE_DEVICES", nullptr}}, [] {
          shim::Connection* c = shim::Connection::get();
          if (c == nullptr) return 1;
          if (c->visible().size() != 3 || c->device_table().count != 3) return 2;
          if (shim::Connection::get() != c) return 3;  // one connection per process
          return c->state() == shim::ConnectionState::kConnected ? 0 : 4;
        }) == 0);
}

TEST_CASE("CUDA_VISIBLE_DEVICES=GPU-<uuid> makes exactly that device the process's device 0", "[client][connection]") {
  TempDir dir;
  BrokerProcess broker(dir, {.arguments = {}, .environment = {{"GPUBROKER_SIM_DEVICES", "3"}}});
  std::string uuid2;
  REQUIRE(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}}, [&] {
            // A first process learns device 2's UUID and leaves it in a file for the test.
            shim::Connection* c = shim::Connection::get();
            if (c == nullptr) return 1;
            FILE* f = std::fopen((dir.path() + "/uuid").c_str(), "w");
            std::fputs(shim::uuid_string(c->device(2).uuid).c_str(), f);
            std::fclose(f);
            return 0;
          }) == 0);
  char text[64] = {};
  FILE* f = std::fopen((dir.path() + "/uuid").c_str(), "r");
  REQUIRE(f != nullptr);
  REQUIRE(std::fgets(text, sizeof(text), f) != nullptr);
  std::fclose(f);
  uuid2 = text;
  CHECK(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}, {"CUDA_VISIBLE_DEVICES", uuid2.c_str()}}, [&] {
          shim::Connection* c = shim::Connection::get();
          if (c == nullptr) return 1;
          if (c->visible().size() != 1) return 2;
          return shim::uuid_string(c->device(0).uuid) == uuid2 && c->device(0).ordinal == 2 ? 0 : 3;
        }) == 0);
}

TEST_CASE("a forked child gets a session of its own and the parent's keeps working", "[client][connection][fork]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}}, [] {
          shim::Connection* parent = shim::Connection::get();
          if (parent == nullptr || !parent->session().call(wire::RequestKind::kNull, {})) return 1;
          const std::uint64_t parent_id = parent->session().session_id();
          const pid_t child = ::fork();
          if (child == 0) {
            shim::Connection* own = shim::Connection::get();
            const bool ok = own != nullptr && own->session().session_id() != parent_id &&
                            own->session().call(wire::RequestKind::kNull, {});
            ::_exit(ok ? 0 : 1);
          }
          if (testing::wait_for_child(child) != 0) return 2;
          if (shim::Connection::get() != parent) return 3;
          return parent->session().call(wire::RequestKind::kNull, {}) ? 0 : 4;
        }) == 0);
}

TEST_CASE("with no broker, the first use fails within 100 ms and later uses fail at once", "[client][connection]") {
  TempDir dir;
  const std::string missing = dir.path() + "/no-broker.sock";
  CHECK(in_child({{"GPUBROKER_SOCKET", missing.c_str()}}, [] {
          const std::int64_t start = ipc::monotonic_ns();
          if (shim::Connection::get() != nullptr) return 1;
          if (ipc::monotonic_ns() - start > 100'000'000) return 2;
          if (shim::Connection::last_failure().find("unreachable") == std::string::npos) return 3;
          return shim::Connection::get() == nullptr ? 0 : 4;
        }) == 0);
}

TEST_CASE("loading the client library and never calling it opens no session", "[client][connection]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}}, [] { return 0; }) == 0);
  // The broker saw nobody: its first session is the one we open now.
  CHECK(in_child({{"GPUBROKER_SOCKET", broker.socket_path().c_str()}}, [] {
          shim::Connection* c = shim::Connection::get();
          return c != nullptr && c->session().session_id() == 1 ? 0 : 1;
        }) == 0);
}
