// What the program registered before main() (fatbins, kernels, variables), and what each
// becomes in the broker once used: a module per fatbin, a function per kernel, with the
// kernel's parameter layout learned from the fatbin by the project's parser.
//
// Registration records only. The first launch of a kernel of a fatbin on a device ships the fatbin
// to the broker (one synchronous request), asks for the function (another), and caches both per
// connection and device, as the CUDA runtime loads a module into each device's context on first
// use there: after fork() the child's new session resolves them again.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fatbin/fatbin.h"
#include "gpubroker/calls/protocol.h"
#include "shim/client/connection.h"

namespace gpubroker::shim::rt {

// Ids, like the broker's objects, are per device (by broker ordinal): DeviceIds holds one per
// device for one connection. Written under Registry::lock; read without it once set (a slot is
// written once per connection, and a new connection exists only in a child after fork()).
struct DeviceIds {
  const Connection* connection = nullptr;
  std::array<std::uint64_t, wire::kMaxDevices> ids{};

  // The id on `device` for `c`; 0 if there is none yet.
  [[nodiscard]] std::uint64_t find(const Connection& c, std::uint32_t device) const {
    return connection == &c ? ids[device] : 0;
  }
  void set(const Connection& c, std::uint32_t device, std::uint64_t id) {
    if (connection != &c) {
      ids = {};
      connection = &c;
    }
    ids[device] = id;
  }
};

// __fatBinC_Wrapper_t: what __cudaRegisterFatBinary receives.
struct FatbinWrapper {
  int magic;  // 0x466243B1
  int version;
  const unsigned long long* data;
  void* filename_or_fatbins;
};

struct FatbinRecord {
  const FatbinWrapper* wrapper;
  bool ended = false;
  DeviceIds modules;  // its module in the broker, per device
  std::vector<fatbin::KernelInfo> kernels;  // parsed once
};

struct FunctionRecord {
  FatbinRecord* fatbin;
  std::string device_name;
  DeviceIds functions;  // its function in the broker, per device
  const fatbin::KernelInfo* layout = nullptr;  // points into fatbin->kernels
  // Answers of the broker, cached until an attribute is set (guarded by Registry::lock).
  std::optional<wire::FuncAttributesResult> attributes;
  std::map<std::tuple<int, std::size_t, unsigned>, int> occupancy;  // (block, shared, flags) -> blocks
};

struct VariableRecord {
  FatbinRecord* fatbin;
  std::string device_name;
  std::size_t size;
  bool constant;
  DeviceIds pointers;  // its device address, per device (each device has its own copy)
};

// Process-wide and never destroyed: __cudaUnregisterFatBinary runs from atexit handlers, after
// static destructors may have run.
struct Registry {
  std::mutex lock;
  std::vector<std::unique_ptr<FatbinRecord>> fatbins;
  std::unordered_map<const void*, FunctionRecord> functions;  // by host stub; nodes never move
  std::unordered_set<const void*> kernel_handles;  // the records' addresses: CUDA 13's cudaKernel_t
  std::unordered_map<const void*, VariableRecord> variables;  // by host shadow
};

Registry& registry();

// A host stub (the key the program launches with) or a cudaKernel_t; nullptr if neither.
FunctionRecord* find_function(const void* key);
// The function's broker id and layout on the calling thread's current device, resolved on first
// use there (per connection): ships its fatbin and asks for the function. Returns a cudaError_t.
int resolve(FunctionRecord& function);
// Once resolve() succeeded on this thread's current device: the function's id there.
std::uint64_t function_id(const FunctionRecord& function);
// The variable's device address in this connection's module on the calling thread's current
// device, resolved on first use there.
int resolve(VariableRecord& variable);
// Once resolve() succeeded on this thread's current device: the variable's address there.
std::uint64_t variable_pointer(const VariableRecord& variable);

}  // namespace gpubroker::shim::rt
