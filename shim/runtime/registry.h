// What the program registered before main() (fatbins, kernels, variables), and what each
// becomes in the broker once used: a module per fatbin, a function per kernel, with the
// kernel's parameter layout learned from the fatbin by the project's parser.
//
// Registration records only. The first launch of a kernel of a fatbin ships the fatbin to the
// broker (one synchronous request), asks for the function (another), and caches both per
// connection: after fork() the child's new session resolves them again.
#pragma once

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
#include "gpubroker/wire/protocol.h"
#include "shim/client/connection.h"

namespace gpubroker::shim::rt {

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
  // In the broker, for the connection that loaded it.
  const Connection* loaded_for = nullptr;
  std::uint64_t module_id = 0;
  std::vector<fatbin::KernelInfo> kernels;  // parsed once
};

struct FunctionRecord {
  FatbinRecord* fatbin;
  std::string device_name;
  const Connection* resolved_for = nullptr;
  std::uint64_t function_id = 0;
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
  const Connection* resolved_for = nullptr;  // where pointer is valid
  std::uint64_t pointer = 0;
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
// The function's broker id and layout, resolved on first use (per connection): ships its fatbin
// and asks for the function. Returns a cudaError_t.
int resolve(FunctionRecord& function);
// The variable's device address in this connection's module, resolved on first use.
int resolve(VariableRecord& variable);

}  // namespace gpubroker::shim::rt
