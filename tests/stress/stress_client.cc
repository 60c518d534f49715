// A CUDA program for the stress scenarios (tests/stress/stress_driver.cc), linked to the runtime
// shim (libcudart.so.13 of the build) as a runner would be. Each thread owns a stream, device
// buffers with host mirrors, a pinned buffer and one kernel buffer, and runs a random mix of
// synchronous and asynchronous work: cudaMemcpy, cudaMemcpyAsync (pageable and pinned),
// cudaMemsetAsync, device-to-device copies, kernel launches (scale_by<float> from
// tests/data/fatbin, run on the sim by stress_kernels.cc), cudaLaunchHostFunc, events, and
// cudaMalloc/cudaFree churn. Every read-back is compared with the mirror, byte for byte.
//
//   stress_client MODE THREADS SECONDS SEED
//     load         run SECONDS, then verify everything and free it; exit 0 only when no byte was
//                  corrupted, no completion was lost and no call failed
//     until-error  run until a call fails (the broker was killed); print when each thread first
//                  saw the error (CLOCK_MONOTONIC ns); exit 0 once every thread has seen one
//     churn        like load, forever, holding ever more (the SIGKILL storm kills it)
//     sticky       launches scale_by<double>, which the sim has no host implementation for, and
//                  checks that the launch failure is sticky as CUDA's error 719 is: every later
//                  call returns it and cudaGetLastError does not clear it (THREADS, SECONDS and
//                  SEED are ignored); prints "sticky=N" (N checks failed), exit 0 when none did
//   In until-error and churn modes it writes one byte to fd 3, where the caller opened one, once
//   every thread holds memory and works: the broker or the client is killed only after that.
// Prints one line: "ops=N checked_bytes=N corrupted=N lost=N errors=N first_error_ns=N".
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern "C" {
struct StressDim3 {
  unsigned x, y, z;
};
using cudaStream_t = void*;
using cudaEvent_t = void*;
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaMallocHost(void**, std::size_t);
int cudaFreeHost(void*);
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaMemcpyAsync(void*, const void*, std::size_t, int, cudaStream_t);
int cudaMemsetAsync(void*, int, std::size_t, cudaStream_t);
int cudaStreamCreateWithFlags(cudaStream_t*, unsigned);
int cudaStreamDestroy(cudaStream_t);
int cudaStreamSynchronize(cudaStream_t);
int cudaEventCreate(cudaEvent_t*);
int cudaEventRecord(cudaEvent_t, cudaStream_t);
int cudaEventSynchronize(cudaEvent_t);
int cudaEventDestroy(cudaEvent_t);
int cudaLaunchHostFunc(cudaStream_t, void (*)(void*), void*);
int cudaLaunchKernel(const void*, StressDim3, StressDim3, void**, std::size_t, cudaStream_t);
int cudaDeviceSynchronize();
int cudaGetLastError();
int cudaPeekAtLastError();
void** __cudaRegisterFatBinary(void*);
void __cudaRegisterFatBinaryEnd(void**);
void __cudaRegisterFunction(void**, const char*, char*, const char*, int, void*, void*, void*, void*, int*);
}

// The fatbin of tests/data/fatbin/kernels.cu, in the section nvcc puts it in.
asm(".section .nv_fatbin, \"a\"\n.balign 8\n.globl stress_fatbin\nstress_fatbin:\n.incbin \"" STRESS_FATBIN
    "\"\n.previous\n");
extern "C" const unsigned long long stress_fatbin[];

namespace {

constexpr int kHostToDevice = 1, kDeviceToHost = 2, kDeviceToDevice = 3;
constexpr unsigned kNonBlocking = 1;
constexpr int kKernelFloats = 1024;

struct FatbinWrapper {
  int magic;
  int version;
  const unsigned long long* data;
  void* unused;
};
const FatbinWrapper kWrapper{0x466243b1, 1, stress_fatbin, nullptr};

void scale_by_stub(float*, float, int) {}  // the host stub: its address names the kernel
void scale_by_double_stub(double*, double, int) {}  // no host implementation on the sim

// The sticky mode: one failed launch poisons the process.
int check_sticky() {
  constexpr int kLaunchFailure = 719;
  int failed = 0;
  auto expect = [&](int got, int want, const char* what) {
    if (got != want) {
      std::fprintf(stderr, "stress_client sticky: %s returned %d, not %d\n", what, got, want);
      ++failed;
    }
  };
  void* data = nullptr;
  expect(cudaMalloc(&data, 64 * sizeof(double)), 0, "cudaMalloc before the launch");
  double factor = 2.0;
  int n = 64;
  void* args[] = {&data, &factor, &n};
  (void)cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_double_stub), StressDim3{1, 1, 1},
                         StressDim3{64, 1, 1}, args, 0, nullptr);
  expect(cudaDeviceSynchronize(), kLaunchFailure, "cudaDeviceSynchronize after the failed launch");
  expect(cudaGetLastError(), kLaunchFailure, "cudaGetLastError");
  expect(cudaGetLastError(), kLaunchFailure, "cudaGetLastError a second time (it does not clear)");
  expect(cudaPeekAtLastError(), kLaunchFailure, "cudaPeekAtLastError");
  void* more = nullptr;
  expect(cudaMalloc(&more, 256), kLaunchFailure, "cudaMalloc after the failure");
  double back[64];
  expect(cudaMemcpy(back, data, sizeof back, kDeviceToHost), kLaunchFailure, "cudaMemcpy after the failure");
  expect(cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_stub), StressDim3{1, 1, 1}, StressDim3{1, 1, 1}, args,
                          0, nullptr),
         kLaunchFailure, "a launch of a served kernel after the failure");
  expect(cudaFree(data), kLaunchFailure, "cudaFree after the failure");
  std::printf("sticky=%d\n", failed);
  return failed == 0 ? 0 : 1;
}

std::int64_t now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

enum class Mode { kLoad, kUntilError, kChurn };

struct Totals {
  std::atomic<std::uint64_t> ops{0}, checked{0}, corrupted{0}, lost{0}, errors{0};
  std::atomic<std::int64_t> last_first_error{0};
  std::atomic<int> holding{0};
};

struct Buffer {
  std::uint8_t* device = nullptr;
  std::vector<std::uint8_t> mirror;
};

class Worker {
 public:
  Worker(Mode mode, std::uint64_t seed, Totals& totals) : mode_(mode), random_(seed), totals_(totals) {}

  void run(std::int64_t deadline_ns) {
    if (!setup()) return finish_with_error();
    totals_.holding.fetch_add(1);
    while (mode_ != Mode::kLoad || now_ns() < deadline_ns) {
      if (!step()) return finish_with_error();
      totals_.ops.fetch_add(1, std::memory_order_relaxed);
    }
    if (!verify_all() || !teardown()) return finish_with_error();
    if (callbacks_run_.load() != callbacks_enqueued_) totals_.lost += callbacks_enqueued_ - callbacks_run_.load();
  }

 private:
  // A call failed: in until-error mode that is the point (the broker is gone), else a failure.
  void finish_with_error() {
    const std::int64_t at = now_ns();
    std::int64_t seen = totals_.last_first_error.load();
    while (at > seen && !totals_.last_first_error.compare_exchange_weak(seen, at)) {
    }
    totals_.errors.fetch_add(1);
  }
  bool ok(int status, const char* what) {
    if (status == 0) return true;
    if (mode_ != Mode::kUntilError) std::fprintf(stderr, "stress_client: %s failed: %d\n", what, status);
    return false;
  }

  std::size_t random_size() { return 1 + random_() % (std::uniform_int_distribution<int>(0, 3)(random_) == 0 ? (1u << 20) : 65536u); }

  bool allocate(Buffer& b, std::size_t bytes) {
    b.mirror.assign(bytes, 0);
    void* p = nullptr;
    if (!ok(cudaMalloc(&p, bytes), "cudaMalloc")) return false;
    b.device = static_cast<std::uint8_t*>(p);
    return ok(cudaMemsetAsync(b.device, 0, bytes, stream_), "cudaMemsetAsync");
  }

  bool setup() {
    if (!ok(cudaStreamCreateWithFlags(&stream_, kNonBlocking), "cudaStreamCreateWithFlags")) return false;
    if (!ok(cudaEventCreate(&event_), "cudaEventCreate")) return false;
    buffers_.resize(3);
    for (Buffer& b : buffers_) {
      if (!allocate(b, random_size())) return false;
    }
    void* pinned = nullptr;
    if (!ok(cudaMallocHost(&pinned, kPinnedBytes), "cudaMallocHost")) return false;
    pinned_ = static_cast<std::uint8_t*>(pinned);
    void* k = nullptr;
    if (!ok(cudaMalloc(&k, kKernelFloats * sizeof(float)), "cudaMalloc")) return false;
    kernel_device_ = static_cast<float*>(k);
    kernel_mirror_.resize(kKernelFloats);
    for (float& f : kernel_mirror_) f = static_cast<float>(1 + random_() % 1000);
    return ok(cudaMemcpy(kernel_device_, kernel_mirror_.data(), kKernelFloats * sizeof(float), kHostToDevice),
              "cudaMemcpy");
  }

  void random_bytes(std::uint8_t* out, std::size_t n) {
    std::uint64_t word = random_();
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 8 == 0) word = random_() * 0x9e3779b97f4a7c15ull + i;
      out[i] = static_cast<std::uint8_t>(word >> (8 * (i % 8)));
    }
  }

  bool compare(const std::uint8_t* got, const std::vector<std::uint8_t>& expected, std::size_t n) {
    std::uint64_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad += got[i] != expected[i];
    totals_.checked += n;
    if (bad != 0) {
      totals_.corrupted += bad;
      std::fprintf(stderr, "stress_client: %llu of %zu bytes differ\n", static_cast<unsigned long long>(bad), n);
    }
    return true;
  }

  bool step() {
    Buffer& b = buffers_[random_() % buffers_.size()];
    const std::size_t bytes = b.mirror.size();
    switch (random_() % 10) {
      case 0: {  // synchronous pageable upload
        std::vector<std::uint8_t> data(bytes);
        random_bytes(data.data(), bytes);
        if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
        if (!ok(cudaMemcpy(b.device, data.data(), bytes, kHostToDevice), "cudaMemcpy")) return false;
        b.mirror = std::move(data);
        return true;
      }
      case 1: {  // asynchronous pinned upload, then the pinned buffer is not touched until a sync
        const std::size_t n = std::min(bytes, kPinnedBytes);
        if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
        random_bytes(pinned_, n);
        std::memcpy(b.mirror.data(), pinned_, n);
        return ok(cudaMemcpyAsync(b.device, pinned_, n, kHostToDevice, stream_), "cudaMemcpyAsync");
      }
      case 2: {  // asynchronous memset of a random range
        const std::size_t offset = random_() % bytes, n = 1 + random_() % (bytes - offset);
        const int value = static_cast<int>(random_() & 0xff);
        std::memset(b.mirror.data() + offset, value, n);
        return ok(cudaMemsetAsync(b.device + offset, value, n, stream_), "cudaMemsetAsync");
      }
      case 3: {  // device to device, in stream order
        Buffer& from = buffers_[random_() % buffers_.size()];
        if (&from == &b) return true;
        const std::size_t n = std::min(bytes, from.mirror.size());
        std::memcpy(b.mirror.data(), from.mirror.data(), n);
        return ok(cudaMemcpyAsync(b.device, from.device, n, kDeviceToDevice, stream_), "cudaMemcpyAsync");
      }
      case 4: {  // a kernel: doubles or halves the kernel buffer (exact for these values)
        float factor = (scale_count_++ % 2 == 0) ? 2.0f : 0.5f;
        int n = kKernelFloats;
        float* data = kernel_device_;
        void* args[] = {&data, &factor, &n};
        if (!ok(cudaLaunchKernel(reinterpret_cast<const void*>(&scale_by_stub), {1, 1, 1}, {kKernelFloats, 1, 1}, args,
                                 0, stream_),
                "cudaLaunchKernel")) {
          return false;
        }
        for (float& f : kernel_mirror_) f *= factor;
        return true;
      }
      case 5: {  // read back through the pinned buffer, ordered by an event
        const std::size_t n = std::min(bytes, kPinnedBytes);
        if (!ok(cudaMemcpyAsync(pinned_, b.device, n, kDeviceToHost, stream_), "cudaMemcpyAsync")) return false;
        if (!ok(cudaEventRecord(event_, stream_), "cudaEventRecord")) return false;
        if (!ok(cudaEventSynchronize(event_), "cudaEventSynchronize")) return false;
        return compare(pinned_, b.mirror, n);
      }
      case 6: {  // synchronous pageable read-back
        if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
        std::vector<std::uint8_t> back(bytes);
        if (!ok(cudaMemcpy(back.data(), b.device, bytes, kDeviceToHost), "cudaMemcpy")) return false;
        return compare(back.data(), b.mirror, bytes);
      }
      case 7: {  // a host function in stream order: each must run exactly once
        ++callbacks_enqueued_;
        return ok(cudaLaunchHostFunc(stream_, &Worker::count_callback, &callbacks_run_), "cudaLaunchHostFunc");
      }
      case 8: {  // allocation churn: replace the buffer (freeing the old one waits for the stream)
        if (mode_ == Mode::kChurn) {
          Buffer extra;  // churn holds more and more until it is killed
          if (!allocate(extra, random_size())) return false;
          held_.push_back(extra.device);
          if (held_.size() < 64) return true;
          for (std::uint8_t* p : held_) {
            if (!ok(cudaFree(p), "cudaFree")) return false;
          }
          held_.clear();
          return true;
        }
        if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
        if (!ok(cudaFree(b.device), "cudaFree")) return false;
        return allocate(b, random_size());
      }
      default:
        return verify_kernel_buffer();
    }
  }

  bool verify_kernel_buffer() {
    if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
    std::vector<float> back(kKernelFloats);
    if (!ok(cudaMemcpy(back.data(), kernel_device_, back.size() * sizeof(float), kDeviceToHost), "cudaMemcpy")) {
      return false;
    }
    std::vector<std::uint8_t> expected(back.size() * sizeof(float));
    std::memcpy(expected.data(), kernel_mirror_.data(), expected.size());
    return compare(reinterpret_cast<const std::uint8_t*>(back.data()), expected, expected.size());
  }

  bool verify_all() {
    if (!ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize")) return false;
    for (Buffer& b : buffers_) {
      std::vector<std::uint8_t> back(b.mirror.size());
      if (!ok(cudaMemcpy(back.data(), b.device, back.size(), kDeviceToHost), "cudaMemcpy")) return false;
      compare(back.data(), b.mirror, back.size());
    }
    return verify_kernel_buffer();
  }

  bool teardown() {
    for (Buffer& b : buffers_) {
      if (!ok(cudaFree(b.device), "cudaFree")) return false;
    }
    for (std::uint8_t* p : held_) {
      if (!ok(cudaFree(p), "cudaFree")) return false;
    }
    return ok(cudaFree(kernel_device_), "cudaFree") && ok(cudaFreeHost(pinned_), "cudaFreeHost") &&
           ok(cudaEventDestroy(event_), "cudaEventDestroy") && ok(cudaStreamDestroy(stream_), "cudaStreamDestroy");
  }

  static void count_callback(void* counter) { static_cast<std::atomic<std::uint64_t>*>(counter)->fetch_add(1); }

  static constexpr std::size_t kPinnedBytes = 256 << 10;
  Mode mode_;
  std::mt19937_64 random_;
  Totals& totals_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t event_ = nullptr;
  std::vector<Buffer> buffers_;
  std::vector<std::uint8_t*> held_;
  std::uint8_t* pinned_ = nullptr;
  float* kernel_device_ = nullptr;
  std::vector<float> kernel_mirror_;
  unsigned scale_count_ = 0;
  std::uint64_t callbacks_enqueued_ = 0;
  std::atomic<std::uint64_t> callbacks_run_{0};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: stress_client load|until-error|churn|sticky THREADS SECONDS SEED\n");
    return 2;
  }
  const std::string mode_name = argv[1];
  const Mode mode = mode_name == "load" ? Mode::kLoad : mode_name == "churn" ? Mode::kChurn : Mode::kUntilError;
  const int threads = std::atoi(argv[2]);
  const double seconds = std::atof(argv[3]);
  const std::uint64_t seed = std::strtoull(argv[4], nullptr, 10);

  void** module = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrapper));
  static char name[] = "_Z8scale_byIfEvPT_S0_i";
  __cudaRegisterFunction(module, reinterpret_cast<const char*>(&scale_by_stub), name, name, -1, nullptr, nullptr,
                         nullptr, nullptr, nullptr);
  static char double_name[] = "_Z8scale_byIdEvPT_S0_i";
  __cudaRegisterFunction(module, reinterpret_cast<const char*>(&scale_by_double_stub), double_name, double_name, -1,
                         nullptr, nullptr, nullptr, nullptr, nullptr);
  __cudaRegisterFatBinaryEnd(module);
  if (mode_name == "sticky") return check_sticky();

  Totals totals;
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(seconds * 1e9);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] { Worker(mode, seed * 1000 + t, totals).run(deadline); });
  }
  if (mode != Mode::kLoad) {
    while (totals.holding.load() < threads && totals.errors.load() == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    struct stat ready {};
    if (::fstat(3, &ready) == 0 && S_ISFIFO(ready.st_mode)) [[maybe_unused]] auto w = ::write(3, "r", 1);
  }
  for (std::thread& w : workers) w.join();
  std::printf("ops=%llu checked_bytes=%llu corrupted=%llu lost=%llu errors=%llu first_error_ns=%lld\n",
              static_cast<unsigned long long>(totals.ops.load()), static_cast<unsigned long long>(totals.checked.load()),
              static_cast<unsigned long long>(totals.corrupted.load()), static_cast<unsigned long long>(totals.lost.load()),
              static_cast<unsigned long long>(totals.errors.load()), static_cast<long long>(totals.last_first_error.load()));
  std::fflush(stdout);
  if (mode == Mode::kUntilError) return totals.errors.load() == static_cast<std::uint64_t>(threads) ? 0 : 1;
  return totals.corrupted.load() == 0 && totals.lost.load() == 0 && totals.errors.load() == 0 ? 0 : 1;
}
