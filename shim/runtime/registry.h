// What the program registered before main() (fatbins, kernels, variables), and what each
// becomes in the broker once used: a module per fatbin, a function per kernel, with the
// kernel's parameter layout learned from the fatbin by the project's parser.
//
// Registration records only. The first launch of a kernel of a fatbin ships the fatbin to the
// broker (one synchronous request), asks for the function (another), and caches both per
// connection: after fork() the child's new session resolves them again.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fatbin/fatbin.h"
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
};

struct VariableRecord {
  FatbinRecord* fatbin;
  std::string device_name;
  std::size_t size;
  bool constant;
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

}  // namespace gpubroker::shim::rt
