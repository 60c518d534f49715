// Host implementations of the kernels of tests/programs/kernels.cu and kernels_templates.cu for
// the sim driver: the same arithmetic, one iteration per device thread of the launch, registered
// under the names the fatbins give them (mangled where the source is C++). They run in the
// broker's process: each asks the launch whether it may reach every range it touches first, and
// faults (700) as a GPU's kernel does otherwise.
#include <cstdint>
#include <cstring>
#include <ctime>

#include "gpubroker/sim/kernel_plugin.h"

namespace {

struct Affine {
  double scale;
  double offset;
  int repeat;
};

template <class T>
T argument(const GpubrokerSimLaunch* launch, unsigned index) {
  T value;
  std::memcpy(&value, launch->params + launch->param_layout[index].offset, sizeof(T));
  return value;
}

long threads(const GpubrokerSimLaunch* l) {
  return static_cast<long>(l->grid.x) * l->grid.y * l->grid.z * l->block.x * l->block.y * l->block.z;
}

// The elements a launch of `n` touches: one per device thread, at most n.
long elements(const GpubrokerSimLaunch* l, int n) { return n <= 0 ? 0 : (threads(l) < n ? threads(l) : n); }

// Whether the launch may touch `count` objects of type T at `p` (write: whether it writes them).
template <class T>
bool reaches(const GpubrokerSimLaunch* l, const T* p, long count, bool write) {
  return count <= 0 || l->memory_accessible(p, static_cast<std::uint64_t>(count) * sizeof(T), write ? 1 : 0);
}

int vector_add(const GpubrokerSimLaunch* l) {
  const auto* a = argument<const float*>(l, 0);
  const auto* b = argument<const float*>(l, 1);
  auto* c = argument<float*>(l, 2);
  const long n = elements(l, argument<int>(l, 3));
  if (!reaches(l, a, n, false) || !reaches(l, b, n, false) || !reaches(l, c, n, true)) return 700;
  for (long i = 0; i < n; ++i) c[i] = a[i] + b[i];
  return 0;
}

int affine(const GpubrokerSimLaunch* l) {
  const auto f = argument<Affine>(l, 0);
  auto* data = argument<float*>(l, 1);
  const long n = elements(l, argument<int>(l, 2));
  const float bias = argument<float>(l, 3);
  if (!reaches(l, data, n, true)) return 700;
  for (long i = 0; i < n; ++i) data[i] = static_cast<float>(data[i] * f.scale + f.offset * f.repeat) + bias;
  return 0;
}

int lookup(const GpubrokerSimLaunch* l) {
  const auto* table = reinterpret_cast<const float*>(l->params + l->param_layout[0].offset);
  const auto* indices = argument<const int*>(l, 1);
  auto* out = argument<float*>(l, 2);
  const long n = elements(l, argument<int>(l, 3));
  if (!reaches(l, indices, n, false) || !reaches(l, out, n, true)) return 700;
  for (long i = 0; i < n; ++i) out[i] = table[indices[i] % 1200];
  return 0;
}

template <class T>
int scale(const GpubrokerSimLaunch* l) {
  auto* data = argument<T*>(l, 0);
  const T factor = argument<T>(l, 1);
  const long n = elements(l, argument<int>(l, 2));
  if (!reaches(l, data, n, true)) return 700;
  for (long i = 0; i < n; ++i) data[i] *= factor;
  return 0;
}

int fill(const GpubrokerSimLaunch* l) {
  auto* out = argument<int*>(l, 0);
  const int value = argument<int>(l, 1);
  const long n = elements(l, argument<int>(l, 2));
  if (!reaches(l, out, n, true)) return 700;
  for (long i = 0; i < n; ++i) out[i] = value + static_cast<int>(i);
  return 0;
}

// tests/programs/free_beside_busy.cu: runs until another stream sets the flag.
int hold_until_set(const GpubrokerSimLaunch* l) {
  const auto* flag = argument<const int*>(l, 0);
  if (!reaches(l, flag, 1, false)) return 700;
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0) {
    const timespec pause{0, 200'000};
    nanosleep(&pause, nullptr);
  }
  return 0;
}

// tests/programs/isolation_probe.cu: every range checked first, as a GPU's page tables check it.
int copy_words(const GpubrokerSimLaunch* l) {
  auto* destination = argument<int*>(l, 0);
  const auto* source = argument<const int*>(l, 1);
  const int n = argument<int>(l, 2);
  const std::uint64_t bytes = static_cast<std::uint64_t>(n > 0 ? n : 0) * sizeof(int);
  if (!l->memory_accessible(source, bytes, 0) || !l->memory_accessible(destination, bytes, 1)) return 700;
  for (int i = 0; i < n; ++i) destination[i] = source[i];
  return 0;
}

}  // namespace

extern "C" const char* const gpubroker_sim_waiting_kernels[] = {"hold_until_set", nullptr};

extern "C" void gpubroker_sim_plugin_init(GpubrokerSimRegisterKernel register_kernel) {
  register_kernel("vector_add", vector_add);
  register_kernel("VecAdd_kernel", vector_add);  // NVIDIA's vectorAddDrv and simpleDrvRuntime samples: the same arithmetic
  register_kernel("affine", affine);
  register_kernel("lookup", lookup);
  register_kernel("_Z5scaleIfEvPT_S0_i", scale<float>);  // scale<float>
  register_kernel("_Z5scaleIiEvPT_S0_i", scale<int>);    // scale<int>
  register_kernel("_ZN3ops4fillEPiii", fill);            // ops::fill
  register_kernel("hold_until_set", hold_until_set);
  register_kernel("copy_words", copy_words);
}
