// Contexts of the driver API: primary contexts (one per device, reference counted), contexts
// programs create, and each thread's stack of current contexts. driver_state.h says what a
// context is here.
#include <array>
#include <cstdio>
#include <mutex>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#include "shim/abi/unsupported.h"
#include "shim/driver/driver_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::drv;
using cuda::CUcontext;
using gpubroker::shim::Connection;

namespace gpubroker::shim::drv {

struct Context {
  int device = 0;
  unsigned flags = 0;
  bool primary = false;
  bool alive = true;  // a destroyed context stays allocated: another thread may still name it
  int retained = 0;   // primary contexts: cuDevicePrimaryCtxRetain minus Release
};

namespace {

constexpr unsigned kKnownFlags = 0x1f;  // CU_CTX_SCHED_MASK | CU_CTX_MAP_HOST | CU_CTX_LMEM_RESIZE_TO_MAX

std::mutex g_lock;  // guards every Context's fields and created()
std::array<Context, wire::kMaxDevices> g_primary = [] {
  std::array<Context, wire::kMaxDevices> primary{};
  for (std::size_t i = 0; i < primary.size(); ++i) {
    primary[i].device = static_cast<int>(i);
    primary[i].primary = true;
  }
  return primary;
}();
// Never destroyed (calls may come during exit), and so neither are the contexts it holds.
std::unordered_set<Context*>& created() {
  static auto* contexts = new std::unordered_set<Context*>();
  return *contexts;
}
thread_local std::vector<Context*> t_stack;

bool is_primary(const Context* c) { return c >= g_primary.data() && c < g_primary.data() + g_primary.size(); }

// Whether `handle` names a live context (g_lock held).
Context* live(CUcontext handle) {
  auto* c = reinterpret_cast<Context*>(handle);
  if (c == nullptr) return nullptr;
  if (is_primary(c)) return c;
  return created().count(c) != 0 && c->alive ? c : nullptr;
}

CUcontext handle(Context* c) { return reinterpret_cast<CUcontext>(c); }

// Makes `c` (or none) the top of the calling thread's stack and its device the thread's.
void make_current(Context* c) {
  if (t_stack.empty()) {
    t_stack.push_back(c);
  } else {
    t_stack.back() = c;
  }
  if (c != nullptr) Connection::set_current_device(c->device);
}

CUresult synchronize_device(int device) {
  Connection* c = Connection::get();
  if (c == nullptr) return kNotInitialized;
  const OnDevice on(device);
  return shim::ops::request<wire::RequestKind::kContextSynchronize>(*c, {});
}

}  // namespace

Context* current_context() {
  if (!t_stack.empty()) return t_stack.back();
  if (Connection::declared_abi() == 0) return nullptr;
  const int device = Connection::current_device();
  return device >= 0 && static_cast<std::size_t>(device) < g_primary.size() ? &g_primary[device] : nullptr;
}

int context_device(const Context* context) { return context->device; }

CUresult enter(Connection*& c) {
  c = Connection::get();
  if (c == nullptr) return kNotInitialized;
  Context* context = current_context();
  if (context == nullptr) return kInvalidContext;
  Connection::set_current_device(context->device);
  return kSuccess;
}

}  // namespace gpubroker::shim::drv

extern "C" {

// ---- primary contexts ---------------------------------------------------------------------

CUresult cuDevicePrimaryCtxRetain(CUcontext* context, int device) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr) return result(kInvalidValue);
  if (device_record(device) == nullptr) return result(Connection::get() == nullptr ? kNotInitialized : kInvalidDevice);
  std::lock_guard guard(g_lock);
  ++g_primary[device].retained;
  *context = handle(&g_primary[device]);
  return result(kSuccess);
}

CUresult cuDevicePrimaryCtxRelease_v2(int device) {
  GPUBROKER_DRIVER_ENTRY();
  if (device_record(device) == nullptr) return result(Connection::get() == nullptr ? kNotInitialized : kInvalidDevice);
  std::lock_guard guard(g_lock);
  if (g_primary[device].retained == 0) return result(kInvalidContext);
  --g_primary[device].retained;
  return result(kSuccess);
}

CUresult cuDevicePrimaryCtxGetState(int device, unsigned* flags, int* active) {
  GPUBROKER_DRIVER_ENTRY();
  if (flags == nullptr || active == nullptr) return result(kInvalidValue);
  if (device_record(device) == nullptr) return result(Connection::get() == nullptr ? kNotInitialized : kInvalidDevice);
  std::lock_guard guard(g_lock);
  *flags = g_primary[device].flags;
  // Active once retained, or once the runtime works on it (the runtime retains it for good).
  *active = g_primary[device].retained > 0 || Connection::declared_abi() != 0 ? 1 : 0;
  return result(kSuccess);
}

CUresult cuDevicePrimaryCtxSetFlags_v2(int device, unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if ((flags & ~kKnownFlags) != 0) return result(kInvalidValue);
  if (device_record(device) == nullptr) return result(Connection::get() == nullptr ? kNotInitialized : kInvalidDevice);
  std::lock_guard guard(g_lock);
  g_primary[device].flags = flags;
  return result(kSuccess);
}

// As cudaDeviceReset (shim/client/operations.h): the memory the process holds on the device.
CUresult cuDevicePrimaryCtxReset_v2(int device) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  if (device_record(device) == nullptr) return result(kInvalidDevice);
  CUresult r = kSuccess;
  {
    const OnDevice on(device);
    r = shim::ops::reset_device(*c);
  }
  {
    std::lock_guard guard(g_lock);
    g_primary[device].retained = 0;
    g_primary[device].flags = 0;
  }
  return result(r);
}

// ---- created contexts and the context stack -------------------------------------------------

CUresult cuCtxCreate_v2(CUcontext* context, unsigned flags, int device) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr || (flags & ~kKnownFlags) != 0) return result(kInvalidValue);
  if (device_record(device) == nullptr) return result(Connection::get() == nullptr ? kNotInitialized : kInvalidDevice);
  auto* made = new Context{device, flags, false, true, 0};
  {
    std::lock_guard guard(g_lock);
    created().insert(made);
  }
  t_stack.push_back(made);
  Connection::set_current_device(device);
  *context = handle(made);
  return result(kSuccess);
}

// With execution-affinity (SM partition) parameters, which a session cannot have: the broker's
// context is every session's on the device. None is cuCtxCreate_v2.
CUresult cuCtxCreate_v3(CUcontext* context, const void* affinity, int affinity_count, unsigned flags, int device) {
  GPUBROKER_DRIVER_ENTRY();
  if (affinity_count != 0 || affinity != nullptr) {
    log_unsupported("cuCtxCreate with execution affinity parameters");
    return result(kNotSupported);
  }
  return cuCtxCreate_v2(context, flags, device);
}

// CUDA 13's cuCtxCreate (cuda.h maps the name to it): the parameters hold execution affinity and
// CIG (graphics interop) settings, neither of which a session can have.
struct ContextCreateParams {
  const void* affinity;
  int affinity_count;
  const void* cig;
};

CUresult cuCtxCreate_v4(CUcontext* context, const ContextCreateParams* params, unsigned flags, int device) {
  GPUBROKER_DRIVER_ENTRY();
  if (params != nullptr && (params->affinity_count != 0 || params->affinity != nullptr || params->cig != nullptr)) {
    log_unsupported("cuCtxCreate with execution affinity or CIG parameters");
    return result(kNotSupported);
  }
  return cuCtxCreate_v2(context, flags, device);
}

// Waits for the device's work, then forgets the context: it is popped from the calling thread's
// stack if current there, and no call accepts it any more.
CUresult cuCtxDestroy_v2(CUcontext context) {
  GPUBROKER_DRIVER_ENTRY();
  int device = 0;
  {
    std::lock_guard guard(g_lock);
    Context* c = live(context);
    if (c == nullptr || c->primary) return result(kInvalidContext);
    c->alive = false;
    device = c->device;
  }
  std::erase(t_stack, reinterpret_cast<Context*>(context));
  if (!t_stack.empty() && t_stack.back() != nullptr) Connection::set_current_device(t_stack.back()->device);
  return result(synchronize_device(device));
}

CUresult cuCtxPushCurrent_v2(CUcontext context) {
  GPUBROKER_DRIVER_ENTRY();
  std::lock_guard guard(g_lock);
  Context* c = live(context);
  if (c == nullptr) return result(kInvalidContext);
  t_stack.push_back(c);
  Connection::set_current_device(c->device);
  return result(kSuccess);
}

CUresult cuCtxPopCurrent_v2(CUcontext* context) {
  GPUBROKER_DRIVER_ENTRY();
  if (t_stack.empty()) return result(kInvalidContext);
  Context* popped = t_stack.back();
  t_stack.pop_back();
  if (context != nullptr) *context = handle(popped);
  if (!t_stack.empty() && t_stack.back() != nullptr) Connection::set_current_device(t_stack.back()->device);
  return result(kSuccess);
}

CUresult cuCtxSetCurrent(CUcontext context) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr) {
    if (!t_stack.empty()) t_stack.back() = nullptr;
    return result(kSuccess);
  }
  std::lock_guard guard(g_lock);
  Context* c = live(context);
  if (c == nullptr) return result(kInvalidContext);
  make_current(c);
  return result(kSuccess);
}

CUresult cuCtxGetCurrent(CUcontext* context) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr) return result(kInvalidValue);
  *context = handle(current_context());
  return result(kSuccess);
}

CUresult cuCtxGetDevice(int* device) {
  GPUBROKER_DRIVER_ENTRY();
  if (device == nullptr) return result(kInvalidValue);
  const Context* c = current_context();
  if (c == nullptr) return result(kInvalidContext);
  *device = c->device;
  return result(kSuccess);
}

CUresult cuCtxSynchronize() {
  GPUBROKER_DRIVER_ENTRY();
  const Context* c = current_context();
  if (c == nullptr) return result(kInvalidContext);
  return result(synchronize_device(c->device));
}

// CUDA 13's forms, naming the context (nullptr: the current one).
CUresult cuCtxGetDevice_v2(int* device, CUcontext context) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr) return cuCtxGetDevice(device);
  if (device == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  const Context* c = live(context);
  if (c == nullptr) return result(kInvalidContext);
  *device = c->device;
  return result(kSuccess);
}

CUresult cuCtxSynchronize_v2(CUcontext context) {
  GPUBROKER_DRIVER_ENTRY();
  if (context == nullptr) return cuCtxSynchronize();
  int device = 0;
  {
    std::lock_guard guard(g_lock);
    const Context* c = live(context);
    if (c == nullptr) return result(kInvalidContext);
    device = c->device;
  }
  return result(synchronize_device(device));
}

// The version of the API the context was made with: 3020 for the _v2 entry points.
CUresult cuCtxGetApiVersion(CUcontext context, unsigned* version) {
  GPUBROKER_DRIVER_ENTRY();
  if (version == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  if (context != nullptr && live(context) == nullptr) return result(kInvalidContext);
  if (context == nullptr && current_context() == nullptr) return result(kInvalidContext);
  *version = 3020;
  return result(kSuccess);
}

CUresult cuCtxGetFlags(unsigned* flags) {
  GPUBROKER_DRIVER_ENTRY();
  if (flags == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  const Context* c = current_context();
  if (c == nullptr) return result(kInvalidContext);
  *flags = c->flags;
  return result(kSuccess);
}

CUresult cuCtxSetFlags(unsigned flags) {
  GPUBROKER_DRIVER_ENTRY();
  if ((flags & ~kKnownFlags) != 0) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  Context* c = current_context();
  if (c == nullptr) return result(kInvalidContext);
  c->flags = flags;
  return result(kSuccess);
}

// A limit is the device context's in the broker, shared by every session (as cudaDeviceSetLimit).
CUresult cuCtxGetLimit(std::size_t* value, int limit) {
  GPUBROKER_DRIVER_ENTRY();
  if (value == nullptr) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t reply = 0;
  const CUresult r = shim::ops::request<wire::RequestKind::kDeviceLimit>(*c, wire::LimitRequest{limit, 0, 0}, &reply);
  if (r == kSuccess) *value = reply;
  return result(r);
}

CUresult cuCtxSetLimit(int limit, std::size_t value) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t reply = 0;
  const CUresult r = shim::ops::request<wire::RequestKind::kDeviceLimit>(*c, wire::LimitRequest{limit, 1, value}, &reply);
  if (r == kSuccess && reply < value) return result(kInvalidValue);
  return result(r);
}

CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
  GPUBROKER_DRIVER_ENTRY();
  if (least != nullptr) *least = 0;
  if (greatest != nullptr) *greatest = -5;  // an H100's range, as the runtime shim answers
  return result(kSuccess);
}

}  // extern "C"

namespace gpubroker::shim::drv {

CUresult result(CUresult status) {
  trace::EntryScope::note_result(status);
  if (cuda::poisons_context(status) && shim::make_sticky(status)) {
    std::fprintf(stderr,
                 "gpubroker: pid %d: CUDA error %d in a driver API call; it is sticky, as in a CUDA context: every "
                 "later CUDA call of this process returns it\n",
                 static_cast<int>(::getpid()), status);
  }
  return status;
}

const wire::DeviceRecord* device_record(int device) {
  Connection* c = Connection::get();
  if (c == nullptr || device < 0 || static_cast<std::size_t>(device) >= c->visible().size()) return nullptr;
  return &c->device(static_cast<std::uint32_t>(device));
}

}  // namespace gpubroker::shim::drv
