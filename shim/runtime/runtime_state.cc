#include "shim/runtime/runtime_state.h"

#include <cxxabi.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/cuda/runtime_abi.h"
#include "shim/abi/unsupported.h"
#include "shim/trace/recorder.h"

namespace gpubroker::shim::rt {

namespace {

struct ThreadState {
  Error last_error = kSuccess;
};

thread_local ThreadState t_state;


bool is_sticky(Error e) { return cuda::poisons_context(e); }

// Says once, on stderr, what poisoned the process: the error, the kernel the broker saw fail
// (demangled), and that every later call returns it. Asks the broker (kSessionError), which knows
// the kernel; the device may report a fault only at a later synchronization, without one.
void report_sticky(Error error) {
  wire::SessionErrorReport report{};
  if (Connection* c = Connection::get()) {
    (void)shim::call<wire::RequestKind::kSessionError>(c->session(), {},
                                                       std::span(reinterpret_cast<std::byte*>(&report), sizeof report));
  }
  report.kernel[sizeof report.kernel - 1] = '\0';
  std::string kernel = report.kernel;
  if (!kernel.empty()) {
    int status = -1;
    char* readable = abi::__cxa_demangle(report.kernel, nullptr, nullptr, &status);
    if (status == 0 && readable != nullptr) kernel = readable;
    std::free(readable);
  }
  const bool sim = (report.flags & wire::kSessionErrorSimDriver) != 0;
  std::fprintf(stderr,
               "gpubroker: pid %d: CUDA error %d (%s: %s)%s%s%s; it is sticky, as in a CUDA context: every later "
               "CUDA call of this process returns it\n",
               static_cast<int>(::getpid()), error, cuda::rt::error_name(error), cuda::rt::error_string(error),
               kernel.empty() ? "" : " in kernel ", kernel.c_str(),
               sim && !kernel.empty() ? " (on the sim driver: a kernel with no host implementation fails so; the "
                                        "broker's log names it)"
                                      : "");
}

Error from_transport(const ipc::IpcError&) {
  // Whatever broke the transport (the broker died, or closed this session), CUDA's word for a
  // device that is gone is cudaErrorDevicesUnavailable.
  return kErrorDevicesUnavailable;
}

}  // namespace

Error record(Error error) {
  trace::EntryScope::note_result(error);
  if (error == kSuccess) return error;
  t_state.last_error = error;
  if (is_sticky(error)) {
    // The process's (shim/client/operations.h): every later call that needs the broker returns it,
    // and cudaGetLastError never clears it.
    if (shim::make_sticky(error)) report_sticky(error);
  }
  return error;
}

Error sticky_error() { return shim::sticky_error(); }

}  // namespace gpubroker::shim::rt (reopened below)

// The generated stubs' hook (shim/abi/unsupported.h): an unsupported call is the thread's last error.
extern "C" void gpubroker_runtime_record_error(int error) noexcept { gpubroker::shim::rt::record(error); }

namespace gpubroker::shim::rt {

Error last_error(bool reset) {
  if (const Error sticky = sticky_error(); sticky != kSuccess) {
    trace::EntryScope::note_result(sticky);
    return sticky;
  }
  const Error error = t_state.last_error;
  if (reset) t_state.last_error = kSuccess;
  trace::EntryScope::note_result(error);
  return error;
}

int current_device() { return Connection::current_device(); }

void set_current_device(int device) { Connection::set_current_device(device); }

// The ABI is declared by the runtime the program actually calls, on its first call: gpu-broker-run
// preloads both libcudart.so.12 and .13, and a declaration from a static constructor would make
// whichever loaded last speak for the process.
Connection* connection() {
  static const bool declared = (Connection::declare_abi(GPUBROKER_CUDART_ABI), true);
  (void)declared;
  return Connection::get();
}

namespace detail {

ipc::ClientSession* session_for_call(Error& error) {
  if (const Error sticky = sticky_error(); sticky != kSuccess) {
    error = record(sticky);
    return nullptr;
  }
  Connection* c = connection();
  if (c == nullptr) {
    error = record(kErrorNoDevice);
    return nullptr;
  }
  return &c->session();
}

Error transport_failed(const ipc::IpcError& error) { return record(from_transport(error)); }

}  // namespace detail

}  // namespace gpubroker::shim::rt
