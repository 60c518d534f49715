// The attacker of the targeted-hostile scenario (tests/stress/stress_driver.cc): a CUDA program
// on the runtime and cuBLAS shims that makes semantically valid requests meant to reach memory or
// objects that are not its own, the way a hostile local user would through the public API:
//   graph        a graph whose memset and copies name a buffer, launched after the buffer is freed
//                (and possibly handed to another session);
//   array        batched-GEMM pointer arrays rewritten, by a copy queued before the GEMM on the same
//                stream, to name memory that is not the attacker's;
//   handle       streams, events, executable graphs and cuBLAS handles used after they were
//                destroyed, and stream ids that were never made;
//   limit        sizes and offsets at and past every edge: ranges straddling an allocation's end,
//                wrapping the address space, leading dimensions and strides whose extent overflows,
//                allocations far past the session's memory limit;
//   exhaust      allocations until the broker refuses one, then released;
//   kernel       (with --kernel, last: it poisons the process) the stress kernel pointed at memory
//                the attacker freed, which another user's session may hold now.
// Each attack has a control that must succeed (the same call on the attacker's own live objects),
// so a refusal means the check refused it, not that the session was already broken.
//
//   targeted_client ROUNDS SEED [--kernel]
// Prints one line: "rounds=N attempts=N refused=N breaches=N controls_failed=N exhausted_at=N
// kernel_faults=N", and for every breach a line on stderr naming it. Exit 0 when no attack
// succeeded and every control did.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" {
struct TargetedDim3 {
  unsigned x, y, z;
};
using cudaStream_t = void*;
using cudaEvent_t = void*;
using cudaGraph_t = void*;
using cudaGraphExec_t = void*;
using cublasHandle_t = void*;
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaMemcpyAsync(void*, const void*, std::size_t, int, cudaStream_t);
int cudaMemcpy2D(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t, int);
int cudaMemset(void*, int, std::size_t);
int cudaMemsetAsync(void*, int, std::size_t, cudaStream_t);
int cudaStreamCreateWithFlags(cudaStream_t*, unsigned);
int cudaStreamDestroy(cudaStream_t);
int cudaStreamSynchronize(cudaStream_t);
int cudaEventCreate(cudaEvent_t*);
int cudaEventRecord(cudaEvent_t, cudaStream_t);
int cudaEventSynchronize(cudaEvent_t);
int cudaEventDestroy(cudaEvent_t);
int cudaStreamBeginCapture(cudaStream_t, int);
int cudaStreamEndCapture(cudaStream_t, cudaGraph_t*);
int cudaGraphInstantiate(cudaGraphExec_t*, cudaGraph_t, unsigned long long);
int cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
int cudaGraphExecDestroy(cudaGraphExec_t);
int cudaGraphDestroy(cudaGraph_t);
int cudaLaunchKernel(const void*, TargetedDim3, TargetedDim3, void**, std::size_t, cudaStream_t);
int cudaDeviceSynchronize();
int cudaGetLastError();
void** __cudaRegisterFatBinary(void*);
void __cudaRegisterFatBinaryEnd(void**);
void __cudaRegisterFunction(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*);
int cublasCreate_v2(cublasHandle_t*);
int cublasDestroy_v2(cublasHandle_t);
int cublasSetStream_v2(cublasHandle_t, cudaStream_t);
int cublasSgemm_v2(cublasHandle_t, int, int, int, int, int, const float*, const float*, int, const float*, int,
                   const float*, float*, int);
int cublasSgemmBatched(cublasHandle_t, int, int, int, int, int, const float*, const float* const*, int,
                       const float* const*, int, const float*, float* const*, int, int);
int cublasSgemmStridedBatched(cublasHandle_t, int, int, int, int, int, const float*, const float*, int, long long,
                              const float*, int, long long, const float*, float*, int, long long, int);
}

// The fatbin of tests/data/fatbin/kernels.cu, in the section nvcc puts it in.
asm(".section .nv_fatbin, \"a\"\n.balign 8\n.globl targeted_fatbin\ntargeted_fatbin:\n.incbin \"" STRESS_FATBIN
    "\"\n.previous\n");
extern "C" const unsigned long long targeted_fatbin[];

namespace {

constexpr int kDeviceToDevice = 3, kHostToDevice = 1;
constexpr int kCaptureRelaxed = 2;
constexpr int kOpN = 0;
constexpr unsigned kNonBlocking = 1;
constexpr std::size_t kBuffer = 64 * 1024;  // a multiple of every allocation granularity
constexpr int kDim = 16;                    // the GEMMs: 16 x 16 floats

struct FatbinWrapper {
  int magic;
  int version;
  const unsigned long long* data;
  void* unused;
};
const FatbinWrapper kWrapper{0x466243b1, 1, targeted_fatbin, nullptr};
void scale_by_stub(float*, float, int) {}  // the host stub: its address names the kernel

struct Tally {
  std::uint64_t attempts = 0, refused = 0, breaches = 0, controls_failed = 0;
};
Tally g_tally;

// The outcome of one attack: an error from the call, or from the device synchronization after
// it (work that is posted reports there), is a refusal. The session's error state is drained
// after, so that the next attack starts clean.
void attack(const char* what, int call) {
  const int sync = cudaDeviceSynchronize();
  (void)cudaGetLastError();
  ++g_tally.attempts;
  if (call != 0 || sync != 0) {
    ++g_tally.refused;
  } else {
    ++g_tally.breaches;
    std::fprintf(stderr, "targeted_client: BREACH: %s succeeded\n", what);
  }
}
void control(const char* what, int status) {
  if (status == 0) return;
  ++g_tally.controls_failed;
  std::fprintf(stderr, "targeted_client: control %s failed: %d\n", what, status);
}
// A control that runs `call` and then synchronizes the device, in that order.
void control_synced(const char* what, int call) {
  control(what, call);
  control(what, cudaDeviceSynchronize());
}

void* allocate(std::size_t bytes) {
  void* p = nullptr;
  control("cudaMalloc", cudaMalloc(&p, bytes));
  return p;
}
// A device address `offset` bytes past `p`, computed as an integer: the attacks name addresses far
// outside any object, where pointer arithmetic would be undefined.
char* at(void* p, std::uint64_t offset) { return reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(p) + offset); }

// Addresses that are not the attacker's: what it freed (another session may hold it now), just
// past its live buffers, and the neighbourhood of both. A range of `bytes` from an address that
// lies wholly inside one of the attacker's live buffers is its own (its allocator may have handed
// a freed address back to it), so it is left out.
std::vector<std::uint64_t> foreign_addresses(const std::vector<std::uint64_t>& freed, const std::vector<void*>& live,
                                             std::uint64_t bytes, std::mt19937_64& random) {
  std::vector<std::uint64_t> candidates = freed;
  for (void* p : live) candidates.push_back(reinterpret_cast<std::uint64_t>(p) + kBuffer);
  for (int i = 0; i < 4 && !freed.empty(); ++i) {
    candidates.push_back(freed[random() % freed.size()] + kBuffer * (random() % 8));
  }
  std::vector<std::uint64_t> out;
  for (std::uint64_t c : candidates) {
    bool own = false;
    for (void* p : live) {
      const auto base = reinterpret_cast<std::uint64_t>(p);
      own = own || (c >= base && c + bytes <= base + kBuffer);
    }
    if (!own) out.push_back(c);
  }
  return out;
}

cudaGraphExec_t capture(cudaStream_t stream, const auto& record) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  control("cudaStreamBeginCapture", cudaStreamBeginCapture(stream, kCaptureRelaxed));
  record();
  control("cudaStreamEndCapture", cudaStreamEndCapture(stream, &graph));
  control("cudaGraphInstantiate", cudaGraphInstantiate(&exec, graph, 0));
  control("cudaGraphDestroy", cudaGraphDestroy(graph));
  return exec;
}

void graph_over_freed(cudaStream_t stream, std::vector<std::uint64_t>& freed) {
  void* victim = allocate(kBuffer);
  void* source = allocate(kBuffer);
  cudaGraphExec_t memset = capture(stream, [&] { (void)cudaMemsetAsync(victim, 0xee, kBuffer, stream); });
  cudaGraphExec_t into = capture(stream, [&] { (void)cudaMemcpyAsync(victim, source, kBuffer, kDeviceToDevice, stream); });
  cudaGraphExec_t out_of = capture(stream, [&] { (void)cudaMemcpyAsync(source, victim, kBuffer, kDeviceToDevice, stream); });
  cudaGraphExec_t live = capture(stream, [&] { (void)cudaMemsetAsync(source, 0x11, kBuffer, stream); });
  control_synced("a graph over live memory", cudaGraphLaunch(memset, stream));
  control("cudaFree", cudaFree(victim));
  freed.push_back(reinterpret_cast<std::uint64_t>(victim));
  // Another session may be handed the range now; the attacker's own next allocation may be too.
  void* again = allocate(kBuffer);
  attack("a graph's memset over freed memory", cudaGraphLaunch(memset, stream));
  attack("a graph's copy into freed memory", cudaGraphLaunch(into, stream));
  attack("a graph's copy out of freed memory", cudaGraphLaunch(out_of, stream));
  control_synced("a graph over memory still held", cudaGraphLaunch(live, stream));
  for (cudaGraphExec_t exec : {memset, into, out_of, live}) control("cudaGraphExecDestroy", cudaGraphExecDestroy(exec));
  control("cudaFree", cudaFree(again) | cudaFree(source));
}

void rewritten_arrays(cudaStream_t stream, const std::vector<std::uint64_t>& freed, std::mt19937_64& random) {
  constexpr int kBatch = 2;
  constexpr std::size_t kMatrix = kDim * kDim * sizeof(float);
  cublasHandle_t handle = nullptr;
  control("cublasCreate_v2", cublasCreate_v2(&handle));
  control("cublasSetStream_v2", cublasSetStream_v2(handle, stream));
  void* a = allocate(kBuffer);
  void* b = allocate(kBuffer);
  void* c = allocate(kBuffer);
  void* arrays = allocate(kBuffer);
  control("cudaMemset", cudaMemset(a, 0, kBuffer) | cudaMemset(b, 0, kBuffer) | cudaMemset(c, 0, kBuffer));
  const auto own = [&](void* p, int i) { return reinterpret_cast<std::uint64_t>(p) + i * kMatrix; };
  std::uint64_t honest[3 * kBatch] = {own(a, 0), own(a, 1), own(b, 0), own(b, 1), own(c, 0), own(c, 1)};
  const float alpha = 1, beta = 0;
  const auto* as = static_cast<const float* const*>(arrays);
  auto gemm = [&] {
    return cublasSgemmBatched(handle, kOpN, kOpN, kDim, kDim, kDim, &alpha, as, kDim, as + kBatch, kDim, &beta,
                              const_cast<float* const*>(as + 2 * kBatch), kDim, kBatch);
  };
  control("cudaMemcpy of honest arrays", cudaMemcpy(arrays, honest, sizeof honest, kHostToDevice));
  control_synced("cublasSgemmBatched over the attacker's matrices", gemm());
  for (std::uint64_t target : foreign_addresses(freed, {a, b, c, arrays}, kMatrix, random)) {
    // Each slot of the arrays in turn names the target: read from it (A, B) or write to it (C).
    for (int slot = 0; slot < 3 * kBatch; ++slot) {
      std::uint64_t evil[3 * kBatch];
      std::memcpy(evil, honest, sizeof evil);
      evil[slot] = target;
      // Queued before the GEMM on its stream: the arrays change after the GEMM was asked for.
      control("cudaMemcpyAsync of the arrays", cudaMemcpy(arrays, honest, sizeof honest, kHostToDevice));
      const int queued = cudaMemcpyAsync(arrays, evil, sizeof evil, kHostToDevice, stream);
      control("cudaMemcpyAsync rewriting the arrays", queued);
      attack("a batched GEMM whose arrays were rewritten in flight", gemm());
    }
  }
  control("cudaMemcpy of honest arrays", cudaMemcpy(arrays, honest, sizeof honest, kHostToDevice));
  control_synced("cublasSgemmBatched after the attempts", gemm());
  control("cublasDestroy_v2", cublasDestroy_v2(handle));
  control("cudaFree", cudaFree(a) | cudaFree(b) | cudaFree(c) | cudaFree(arrays));
}

void stale_handles(std::mt19937_64& random) {
  void* own = allocate(kBuffer);
  cudaStream_t stream = nullptr;
  cudaEvent_t event = nullptr;
  control("cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&stream, kNonBlocking));
  control("cudaEventCreate", cudaEventCreate(&event));
  cudaGraphExec_t exec = capture(stream, [&] { (void)cudaMemsetAsync(own, 1, kBuffer, stream); });
  cublasHandle_t handle = nullptr;
  control("cublasCreate_v2", cublasCreate_v2(&handle));
  control("cudaStreamDestroy", cudaStreamDestroy(stream));
  control("cudaEventDestroy", cudaEventDestroy(event));
  control("cudaGraphExecDestroy", cudaGraphExecDestroy(exec));
  control("cublasDestroy_v2", cublasDestroy_v2(handle));
  attack("cudaMemsetAsync on a destroyed stream", cudaMemsetAsync(own, 2, kBuffer, stream));
  attack("cudaStreamSynchronize of a destroyed stream", cudaStreamSynchronize(stream));
  attack("cudaEventRecord of a destroyed event", cudaEventRecord(event, nullptr));
  attack("cudaEventSynchronize of a destroyed event", cudaEventSynchronize(event));
  attack("cudaGraphLaunch of a destroyed executable graph", cudaGraphLaunch(exec, nullptr));
  const float one = 1;
  attack("cublasSgemm_v2 on a destroyed handle",
         cublasSgemm_v2(handle, kOpN, kOpN, kDim, kDim, kDim, &one, static_cast<float*>(own), kDim,
                        static_cast<float*>(own), kDim, &one, static_cast<float*>(own), kDim));
  for (int i = 0; i < 4; ++i) {
    const auto forged = reinterpret_cast<cudaStream_t>((random() | 1) & 0x0000ffffffffffffull);
    attack("cudaStreamSynchronize of a stream id never made", cudaStreamSynchronize(forged));
  }
  control("cudaFree", cudaFree(own));
}

void past_the_edges(std::uint64_t session_limit) {
  void* own = allocate(kBuffer);
  void* other = allocate(kBuffer);
  cublasHandle_t handle = nullptr;
  control("cublasCreate_v2", cublasCreate_v2(&handle));
  control("a memset of the whole buffer", cudaMemset(own, 0, kBuffer));
  attack("a memset straddling the buffer's end", cudaMemset(at(own, kBuffer - 4096), 0, 8192));
  attack("a memset of SIZE_MAX bytes", cudaMemset(own, 0, SIZE_MAX));
  attack("a memset whose range wraps the address space", cudaMemset(reinterpret_cast<void*>(UINTPTR_MAX - 100), 0, 200));
  attack("a copy of nearly 2^64 bytes", cudaMemcpy(own, other, SIZE_MAX - 4095, kDeviceToDevice));
  attack("a copy into own + 2^63", cudaMemcpy(at(own, 1ull << 63), other, 64, kDeviceToDevice));
  attack("a copy straddling the source's end", cudaMemcpy(own, at(other, kBuffer - 64), 128, kDeviceToDevice));
  attack("a 2D copy whose pitch times height overflows",
         cudaMemcpy2D(own, 1ull << 62, other, 64, 64, 8, kDeviceToDevice));
  attack("an allocation of 2^50 bytes", cudaMalloc(&other, 1ull << 50) == 0 ? 0 : 1);
  if (session_limit != 0) {
    void* big = nullptr;
    const int r = cudaMalloc(&big, session_limit + kBuffer);
    attack("an allocation past the session's memory limit", r);
    if (r == 0) (void)cudaFree(big);
  }
  const float one = 1;
  const auto* f = static_cast<const float*>(own);
  attack("a GEMM whose leading dimension reaches past its matrix",
         cublasSgemm_v2(handle, kOpN, kOpN, kDim, kDim, kDim, &one, f, 1 << 20, f, kDim, &one, static_cast<float*>(own), kDim));
  attack("a strided batched GEMM whose stride times count overflows",
         cublasSgemmStridedBatched(handle, kOpN, kOpN, kDim, kDim, kDim, &one, f, kDim, 1ll << 60, f, kDim, 0, &one,
                                   static_cast<float*>(own), kDim, 0, 16));
  control("cublasDestroy_v2", cublasDestroy_v2(handle));
  control("cudaFree", cudaFree(own));
  (void)cudaFree(other);
}

// Allocations of 16 MiB until one is refused; the number that were made.
std::uint64_t exhaust() {
  std::vector<void*> held;
  for (int i = 0; i < 4096; ++i) {
    void* p = nullptr;
    if (cudaMalloc(&p, 16ull << 20) != 0) break;
    held.push_back(p);
  }
  (void)cudaGetLastError();
  for (void* p : held) control("cudaFree of an exhausting allocation", cudaFree(p));
  return held.size();
}

// The stress kernel pointed at each foreign address: on a driver with a context per user, the
// first one that is not the attacker's faults in the attacker's context, which poisons it.
int kernel_at_foreign(const std::vector<std::uint64_t>& freed, std::mt19937_64& random) {
  void** module = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrapper));
  __cudaRegisterFunction(module, reinterpret_cast<const char*>(&scale_by_stub),
                         const_cast<char*>("_Z8scale_byIfEvPT_S0_i"), "_Z8scale_byIfEvPT_S0_i", -1, nullptr, nullptr,
                         nullptr, nullptr, nullptr);
  __cudaRegisterFatBinaryEnd(module);
  float* live = static_cast<float*>(allocate(kBuffer));
  float factor = 3;
  int n = 1024;
  void* own_args[] = {&live, &factor, &n};
  control_synced("the kernel over the attacker's own memory",
                 cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_stub), {4, 1, 1}, {256, 1, 1}, own_args, 0, nullptr));
  int faults = 0;
  for (std::uint64_t target : foreign_addresses(freed, {live}, 1024 * sizeof(float), random)) {
    float* pointer = reinterpret_cast<float*>(target);
    void* args[] = {&pointer, &factor, &n};
    const int launched =
        cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_stub), {4, 1, 1}, {256, 1, 1}, args, 0, nullptr);
    const int synced = cudaDeviceSynchronize();
    if (launched != 0 || synced != 0) ++faults;
    if (synced != 0) break;  // the context is poisoned from here on, as CUDA's is
  }
  return faults;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: targeted_client ROUNDS SEED [--kernel] [--session-limit=BYTES]\n");
    return 2;
  }
  const int rounds = std::atoi(argv[1]);
  std::mt19937_64 random(std::strtoull(argv[2], nullptr, 10));
  bool kernel = false;
  std::uint64_t session_limit = 0;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--kernel") kernel = true;
    if (arg.rfind("--session-limit=", 0) == 0) session_limit = std::strtoull(arg.c_str() + 16, nullptr, 10);
  }
  cudaStream_t stream = nullptr;
  control("cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&stream, kNonBlocking));
  std::vector<std::uint64_t> freed;
  std::uint64_t exhausted_at = 0;
  for (int round = 0; round < rounds; ++round) {
    graph_over_freed(stream, freed);
    rewritten_arrays(stream, freed, random);
    stale_handles(random);
    past_the_edges(session_limit);
    exhausted_at = exhaust();
  }
  const int faults = kernel ? kernel_at_foreign(freed, random) : 0;
  std::printf("rounds=%d attempts=%llu refused=%llu breaches=%llu controls_failed=%llu exhausted_at=%llu kernel_faults=%d\n",
              rounds, static_cast<unsigned long long>(g_tally.attempts), static_cast<unsigned long long>(g_tally.refused),
              static_cast<unsigned long long>(g_tally.breaches), static_cast<unsigned long long>(g_tally.controls_failed),
              static_cast<unsigned long long>(exhausted_at), faults);
  return g_tally.breaches == 0 && g_tally.controls_failed == 0 ? 0 : 1;
}
