// Kernel launches through libcudart.so.12, as a program built by nvcc 12 makes them. PyPI's CUDA
// 12.9 compiler package ships ptxas but no nvcc driver, so the build does by hand what nvcc 12
// does (tests/programs/meson.build):
//   - device code: kernels.cu's, as PTX (ISA 8.8, CUDA 12.9's) and as sm_90 SASS from CUDA 12.9's
//     ptxas, packed into three fatbins: SASS + PTX compressed with LZ4 (what CUDA 12's fatbinary
//     does), PTX only and uncompressed, SASS only compressed with zstd;
//   - host code (this file, compiled against the 12.9 headers and linked to PyPI's
//     libcudart.so.12): the registration crt/host_runtime.h generates, in a static constructor,
//     and `kernel<<<...>>>(args)` as __cudaPushCallConfiguration and a stub that pops the
//     configuration and launches, in both forms nvcc 12 emits: cudaLaunchKernel (before 12.8, or
//     with __NV_LEGACY_LAUNCH) and __cudaGetKernel + __cudaLaunchKernel (12.8 and later).
// Run against the shim and a sim broker whose kernels are kernels_plugin.cc. Exits 0 only when
// every result holds.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

// What nvcc's generated code calls; declared here as crt/host_runtime.h and crt/device_functions.h
// declare them for nvcc's own compilation.
extern "C" {
void** __cudaRegisterFatBinary(void* wrapper);
void __cudaRegisterFatBinaryEnd(void** handle);
void __cudaUnregisterFatBinary(void** handle);
void __cudaRegisterFunction(void** handle, const char* host_stub, char* device_function, const char* device_name,
                            int thread_limit, uint3* tid, uint3* bid, dim3* block, dim3* grid, int* warp_size);
void __cudaRegisterVar(void** handle, char* host_variable, char* device_address, const char* device_name, int ext,
                       size_t size, int constant, int global);
unsigned __cudaPushCallConfiguration(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream);
cudaError_t __cudaPopCallConfiguration(dim3* grid, dim3* block, size_t* shared_bytes, void* stream);
cudaError_t __cudaGetKernel(cudaKernel_t* kernel, const void* host_stub);
cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 grid, dim3 block, void** args, size_t shared_bytes,
                               cudaStream_t stream);
}

// The three fatbins, in the section nvcc puts them in.
#define GPUBROKER_EMBED(symbol, path)                                 \
  asm(".section .nv_fatbin, \"a\"\n.balign 8\n.globl " #symbol "\n" #symbol \
      ":\n.incbin \"" path "\"\n.previous\n")
GPUBROKER_EMBED(fatbin_sass_ptx_lz4, FATBIN_SASS_PTX_LZ4);
GPUBROKER_EMBED(fatbin_ptx_raw, FATBIN_PTX_RAW);
GPUBROKER_EMBED(fatbin_sass_zstd, FATBIN_SASS_ZSTD);
extern "C" const unsigned long long fatbin_sass_ptx_lz4[], fatbin_ptx_raw[], fatbin_sass_zstd[];

namespace {

struct FatbinWrapper {  // __fatBinC_Wrapper_t
  int magic;
  int version;
  const unsigned long long* data;
  void* filename_or_fatbins;
};
constexpr int kFatbinWrapperMagic = 0x466243b1;
const FatbinWrapper kWrappers[3] = {{kFatbinWrapperMagic, 1, fatbin_sass_ptx_lz4, nullptr},
                                    {kFatbinWrapperMagic, 1, fatbin_ptx_raw, nullptr},
                                    {kFatbinWrapperMagic, 1, fatbin_sass_zstd, nullptr}};

struct Affine {
  double scale;
  double offset;
  int repeat;
};
struct Table {
  float values[1200];  // 4800 bytes of parameters: past 4352, through staging
};

// The stub nvcc generates for a kernel: pop the configuration <<<...>>> pushed, then launch with
// the addresses of the arguments. kFatbin makes each fatbin's kernels distinct host functions.
template <int kFatbin, bool kLegacy, class... Args>
void stub(Args... args) {
  void* addresses[] = {static_cast<void*>(&args)...};
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
  if (__cudaPopCallConfiguration(&grid, &block, &shared_bytes, &stream) != cudaSuccess) return;
  const void* self = reinterpret_cast<const void*>(&stub<kFatbin, kLegacy, Args...>);
  if constexpr (kLegacy) {
    (void)cudaLaunchKernel(self, grid, block, addresses, shared_bytes, stream);
  } else {
    static cudaKernel_t kernel = nullptr;
    if (kernel == nullptr) (void)__cudaGetKernel(&kernel, self);
    (void)__cudaLaunchKernel(kernel, grid, block, addresses, shared_bytes, stream);
  }
}

template <int F, bool L>
constexpr auto vector_add = &stub<F, L, const float*, const float*, float*, int>;
template <int F, bool L>
constexpr auto affine = &stub<F, L, Affine, float*, int, float>;
template <int F, bool L>
constexpr auto lookup = &stub<F, L, Table, const int*, float*, int>;

float scale_factor;  // the host shadow of kernels.cu's __device__ float scale_factor

void** handles[3];

template <int F>
void register_kernels(void** handle) {
  auto add = [&](const void* host_stub, const char* name) {
    __cudaRegisterFunction(handle, static_cast<const char*>(host_stub), const_cast<char*>(name), name, -1, nullptr,
                           nullptr, nullptr, nullptr, nullptr);
  };
  add(reinterpret_cast<const void*>(vector_add<F, true>), "vector_add");
  add(reinterpret_cast<const void*>(vector_add<F, false>), "vector_add");
  add(reinterpret_cast<const void*>(affine<F, true>), "affine");
  add(reinterpret_cast<const void*>(affine<F, false>), "affine");
  add(reinterpret_cast<const void*>(lookup<F, true>), "lookup");
  add(reinterpret_cast<const void*>(lookup<F, false>), "lookup");
}

// nvcc's __cudaRegisterBinary, once per translation unit, before main.
__attribute__((constructor)) void register_binaries() {
  handles[0] = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrappers[0]));
  register_kernels<0>(handles[0]);
  __cudaRegisterVar(handles[0], reinterpret_cast<char*>(&scale_factor), const_cast<char*>("scale_factor"),
                    "scale_factor", 0, sizeof(float), 0, 0);
  __cudaRegisterFatBinaryEnd(handles[0]);
  handles[1] = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrappers[1]));
  register_kernels<1>(handles[1]);
  __cudaRegisterFatBinaryEnd(handles[1]);
  handles[2] = __cudaRegisterFatBinary(const_cast<FatbinWrapper*>(&kWrappers[2]));
  register_kernels<2>(handles[2]);
  __cudaRegisterFatBinaryEnd(handles[2]);
  std::atexit([] {
    for (void** handle : handles) __cudaUnregisterFatBinary(handle);
  });
}

// kernel<<<grid, block, shared, stream>>>(args...)
template <class... Args>
void launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, Args... args) {
  if (__cudaPushCallConfiguration(grid, block, shared, stream) == 0) kernel(args...);
}

int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

constexpr int n = 10000;
std::vector<float> a(n), b(n);
float *da, *db, *dc;

template <int F, bool L>
void check_vector_add(const char* what) {
  CHECK(cudaMemset(dc, 0, n * sizeof(float)) == cudaSuccess);
  launch(vector_add<F, L>, dim3((n + 255) / 256), dim3(256), 0, nullptr, static_cast<const float*>(da),
         static_cast<const float*>(db), dc, n);
  CHECK(cudaGetLastError() == cudaSuccess);
  std::vector<float> c(n);
  CHECK(cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += c[i] != a[i] + b[i];
  CHECK(wrong == 0);
  std::printf("vector_add from %s, %s launch: %s\n", what, L ? "cudaLaunchKernel" : "__cudaLaunchKernel",
              wrong == 0 ? "correct" : "WRONG");
}

}  // namespace

int main() {
  int runtime = 0;
  CHECK(cudaRuntimeGetVersion(&runtime) == cudaSuccess && runtime / 1000 == 12);
  for (int i = 0; i < n; ++i) a[i] = i * 0.25f, b[i] = 500.0f - i;
  CHECK(cudaMalloc(&da, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMalloc(&db, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMalloc(&dc, n * sizeof(float)) == cudaSuccess);
  CHECK(cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);

  check_vector_add<0, true>("SASS+PTX LZ4");
  check_vector_add<0, false>("SASS+PTX LZ4");
  check_vector_add<1, true>("PTX-only uncompressed");
  check_vector_add<1, false>("PTX-only uncompressed");
  check_vector_add<2, true>("SASS-only zstd");
  check_vector_add<2, false>("SASS-only zstd");

  // A struct parameter, and a 4800-byte parameter block.
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  CHECK(cudaMemcpy(dc, a.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  launch(affine<0, false>, dim3((n + 127) / 128), dim3(128), 0, stream, Affine{3.0, 0.5, 2}, dc, n, 1.0f);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  std::vector<float> d(n);
  CHECK(cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += d[i] != static_cast<float>(a[i] * 3.0 + 0.5 * 2) + 1.0f;
  CHECK(wrong == 0);

  static Table table;
  for (int i = 0; i < 1200; ++i) table.values[i] = i * 0.5f;
  std::vector<int> indices(n);
  for (int i = 0; i < n; ++i) indices[i] = i * 13;
  int* di;
  CHECK(cudaMalloc(&di, n * sizeof(int)) == cudaSuccess);
  CHECK(cudaMemcpy(di, indices.data(), n * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
  launch(lookup<2, true>, dim3((n + 255) / 256), dim3(256), 0, stream, table, static_cast<const int*>(di), dc, n);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  CHECK(cudaMemcpy(d.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  wrong = 0;
  for (int i = 0; i < n; ++i) wrong += d[i] != table.values[indices[i] % 1200];
  CHECK(wrong == 0);

  // A registered device variable, with its initial value from the module.
  float value = 0;
  CHECK(cudaMemcpyFromSymbol(&value, &scale_factor, sizeof(value)) == cudaSuccess && value == 2.5f);

  CHECK(cudaFree(da) == cudaSuccess && cudaFree(db) == cudaSuccess && cudaFree(dc) == cudaSuccess);
  CHECK(cudaFree(di) == cudaSuccess);
  std::printf("%s: %d failure(s)\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
