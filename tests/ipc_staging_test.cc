// Multi-process tests of bulk data: staged payloads of every size in both directions, checked
// end to end, concurrent transfers from many threads, and the host arena read in place.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "ipc/checksum.h"
#include "ipc/client_session.h"
#include "tests/support/forked_server.h"

using namespace gpubroker;
using testing::ForkedServer;
using testing::TempDir;

namespace {

ipc::ListenerOptions small_pipes(const TempDir& dir) {
  ipc::ListenerOptions options;
  options.socket_path = dir.path() + "/broker.sock";
  options.pipe_bytes = 1ull << 20;  // small, so that large payloads wrap many times
  options.arena_bytes = 1ull << 30;
  return options;
}

std::uint64_t checksum_of(std::span<const std::byte> bytes) {
  ipc::Checksum sum;
  sum.update(bytes);
  return sum.value();
}

}  // namespace

TEST_CASE("staged payloads from 0 bytes to 1 GiB reach the broker intact", "[ipc][staging]") {
  TempDir dir;
  ForkedServer server(small_pipes(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  for (std::uint64_t size : {0ull, 1ull, 7ull, 4095ull, 262'143ull, 262'144ull, 262'145ull, (1ull << 20) + 1,
                             (8ull << 20) + 3, 1ull << 30}) {
    std::vector<std::byte> data(size);
    ipc::fill_pattern(data, size * 31 + 1, 0);
    auto reply = session.value()->call(wire::TransportKind::kStageChecksum, {}, ipc::StagedOut{data});
    REQUIRE(reply);
    const auto result = reply.value().result_as<wire::ChecksumResult>();
    INFO("size " << size);
    CHECK(result.bytes == size);
    CHECK(result.checksum == checksum_of(data));
  }
}

TEST_CASE("staged payloads from 0 bytes to 1 GiB come back from the broker intact", "[ipc][staging]") {
  TempDir dir;
  ForkedServer server(small_pipes(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  for (std::uint64_t size : {0ull, 1ull, 4095ull, 262'145ull, (8ull << 20) + 3, 1ull << 30}) {
    std::vector<std::byte> received(size), expected(size);
    const std::uint64_t seed = size ^ 0x5eed;
    ipc::fill_pattern(expected, seed, 0);
    auto reply = session.value()->call(wire::TransportKind::kStagePattern, std::as_bytes(std::span(&seed, 1)),
                                       ipc::StagedIn{received});
    REQUIRE(reply);
    INFO("size " << size);
    CHECK(checksum_of(received) == checksum_of(expected));
  }
}

TEST_CASE("sixteen threads staging 128 KiB pieces at once each get their own data back", "[ipc][staging]") {
  TempDir dir;
  ForkedServer server(small_pipes(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> out(128 * 1024), in(128 * 1024), expected(128 * 1024);
      for (int i = 0; i < 40; ++i) {
        const std::uint64_t seed = static_cast<std::uint64_t>(t) * 1000 + static_cast<std::uint64_t>(i);
        ipc::fill_pattern(out, seed, 0);
        auto up = session.value()->call(wire::TransportKind::kStageChecksum, {}, ipc::StagedOut{out});
        if (!up || up.value().result_as<wire::ChecksumResult>().checksum != checksum_of(out)) ++wrong;
        auto down = session.value()->call(wire::TransportKind::kStagePattern, std::as_bytes(std::span(&seed, 1)),
                                          ipc::StagedIn{in});
        ipc::fill_pattern(expected, seed, 0);
        if (!down || in != expected) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
}

TEST_CASE("the broker reads host-arena memory in place at the offset the client names", "[ipc][arena]") {
  TempDir dir;
  ForkedServer server(small_pipes(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  ipc::HostArena& arena = session.value()->arena();
  std::vector<std::byte*> blocks;
  for (std::size_t size : {1ul, 300ul, 4096ul, 3ul << 20, 64ul << 20}) {
    auto block = arena.allocate(size);
    REQUIRE(block);
    CHECK(reinterpret_cast<std::uintptr_t>(block.value()) % ipc::kHostArenaAlignment == 0);
    std::span<std::byte> bytes(block.value(), size);
    ipc::fill_pattern(bytes, size, 0);
    const auto offset = arena.offset_of(block.value(), size);
    REQUIRE(offset);
    const wire::ArenaRange range{*offset, size};
    auto reply = session.value()->call(wire::TransportKind::kArenaChecksum, std::as_bytes(std::span(&range, 1)));
    REQUIRE(reply);
    CHECK(reply.value().result_as<wire::ChecksumResult>().checksum == checksum_of(bytes));
    blocks.push_back(block.value());
  }
  for (std::byte* block : blocks) CHECK(arena.free(block));
  CHECK_FALSE(arena.offset_of(arena.base() + arena.size() - 10, 11));
}

TEST_CASE("the host arena reports exhaustion instead of overrunning", "[ipc][arena]") {
  TempDir dir;
  ForkedServer server(small_pipes(dir));
  auto session = ipc::ClientSession::connect(testing::client_options(server.socket_path()));
  REQUIRE(session);
  auto too_big = session.value()->arena().allocate(2ull << 30);
  REQUIRE_FALSE(too_big);
  CHECK(too_big.error().code == ipc::IpcErrc::kOutOfMemory);
}
