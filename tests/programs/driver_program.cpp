// A program of the driver API, written as NVIDIA's driver-API samples are (deviceQueryDrv,
// vectorAddDrv): the toolkit's cuda.h, -lcuda, kernels loaded from image files, plus the runtime
// beside it on the same objects. Run against libcuda.so.1 and libcudart.so.13 of gpubroker and a
// sim broker whose kernel plugin computes vector_add:
//   driver_program KERNELS.cubin KERNELS.fatbin KERNELS.ptx
// Prints each step; exits non-zero at the first that fails.
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

#define DRV(call)                                                                           \
  do {                                                                                      \
    const CUresult r_ = (call);                                                             \
    if (r_ != CUDA_SUCCESS) {                                                               \
      const char* name_ = nullptr;                                                          \
      cuGetErrorName(r_, &name_);                                                           \
      std::printf("FAIL %s: %d (%s) at line %d\n", #call, r_, name_ ? name_ : "?", __LINE__); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

std::vector<char> read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.push_back('\0');
  return bytes;
}

// vector_add(a, b, c, n) over n floats from `module`, launched both ways the driver API passes
// parameters: kernelParams, and one packed buffer through `extra`.
void vector_add(CUmodule module, const char* image, CUstream stream) {
  CUfunction add = nullptr;
  DRV(cuModuleGetFunction(&add, module, "vector_add"));
  size_t offset = 0, size = 0;
  DRV(cuFuncGetParamInfo(add, 3, &offset, &size));
  expect(offset == 24 && size == 4, "cuFuncGetParamInfo reads the layout of vector_add's fourth parameter");
  const int n = 4096;
  std::vector<float> a(n), b(n), c(n, -1.0f);
  for (int i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = static_cast<float>(2 * i + 1);
  }
  CUdeviceptr da = 0, db = 0, dc = 0;
  DRV(cuMemAlloc(&da, n * sizeof(float)));
  DRV(cuMemAlloc(&db, n * sizeof(float)));
  DRV(cuMemAlloc(&dc, n * sizeof(float)));
  DRV(cuMemcpyHtoD(da, a.data(), n * sizeof(float)));
  DRV(cuMemcpyHtoD(db, b.data(), n * sizeof(float)));
  DRV(cuMemsetD32Async(dc, 0, n, stream));  // on the launch's stream: a non-blocking stream does not wait for the default one
  int count = n;
  void* params[] = {&da, &db, &dc, &count};
  DRV(cuLaunchKernel(add, (n + 255) / 256, 1, 1, 256, 1, 1, 0, stream, params, nullptr));
  DRV(cuStreamSynchronize(stream));
  DRV(cuMemcpyDtoH(c.data(), dc, n * sizeof(float)));
  bool same = true;
  for (int i = 0; i < n; ++i) same = same && c[i] == a[i] + b[i];
  std::string what = std::string("vector_add from the ") + image + " through kernelParams";
  expect(same, what.c_str());

  struct {
    CUdeviceptr a, b, c;
    int n;
  } packed = {db, db, dc, n};
  size_t packed_bytes = 28;  // the parameter block: three pointers and an int
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE, &packed_bytes, CU_LAUNCH_PARAM_END};
  DRV(cuLaunchKernel(add, (n + 255) / 256, 1, 1, 256, 1, 1, 0, stream, nullptr, extra));
  DRV(cuMemcpyDtoHAsync(c.data(), dc, n * sizeof(float), stream));
  DRV(cuStreamSynchronize(stream));
  same = true;
  for (int i = 0; i < n; ++i) same = same && c[i] == 2 * b[i];
  what = std::string("vector_add from the ") + image + " through one packed buffer in extra";
  expect(same, what.c_str());
  DRV(cuMemFree(da));
  DRV(cuMemFree(db));
  DRV(cuMemFree(dc));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: driver_program KERNELS.cubin KERNELS.fatbin KERNELS.ptx\n");
    return 2;
  }
  // deviceQueryDrv's questions.
  DRV(cuInit(0));
  int devices = 0, driver = 0;
  DRV(cuDeviceGetCount(&devices));
  DRV(cuDriverGetVersion(&driver));
  CUdevice device = -1;
  DRV(cuDeviceGet(&device, 0));
  char name[256] = {};
  DRV(cuDeviceGetName(name, sizeof name, device));
  size_t total = 0;
  DRV(cuDeviceTotalMem(&total, device));
  int major = 0, minor = 0;
  DRV(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
  DRV(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
  std::printf("device 0 of %d: %s, compute capability %d.%d, %zu MiB, driver %d\n", devices, name, major, minor,
              total >> 20, driver);
  expect(devices >= 1 && major >= 7 && total > 0, "the device answers deviceQueryDrv's questions");

  // A context, current on this thread.
  CUcontext none = reinterpret_cast<CUcontext>(1);
  DRV(cuCtxGetCurrent(&none));
  expect(none == nullptr, "no context is current before one is made");
  CUdeviceptr early = 0;
  expect(cuMemAlloc(&early, 256) == CUDA_ERROR_INVALID_CONTEXT, "cuMemAlloc without a context is CUDA_ERROR_INVALID_CONTEXT");
  CUcontext context = nullptr, current = nullptr;
  DRV(cuCtxCreate(&context, nullptr, 0, device));  // CUDA 13's cuCtxCreate (_v4): no creation parameters
  DRV(cuCtxGetCurrent(&current));
  CUdevice of_context = -1;
  DRV(cuCtxGetDevice(&of_context));
  unsigned api = 0;
  DRV(cuCtxGetApiVersion(context, &api));
  expect(current == context && of_context == device && api >= 3020, "cuCtxCreate makes the context current");
  size_t free_bytes = 0, total_bytes = 0;
  DRV(cuMemGetInfo(&free_bytes, &total_bytes));
  expect(free_bytes > 0 && free_bytes <= total_bytes, "cuMemGetInfo answers for the context's device");

  // Kernels from the three kinds of image nvcc writes.
  CUstream stream = nullptr;
  DRV(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUmodule cubin = nullptr, fatbin = nullptr, ptx = nullptr;
  DRV(cuModuleLoad(&cubin, argv[1]));
  vector_add(cubin, "cubin (cuModuleLoad of a file)", stream);
  const std::vector<char> fatbin_bytes = read_file(argv[2]);
  DRV(cuModuleLoadFatBinary(&fatbin, fatbin_bytes.data()));
  vector_add(fatbin, "fatbin (cuModuleLoadFatBinary)", stream);
  const std::vector<char> ptx_text = read_file(argv[3]);
  CUjit_option option = CU_JIT_OPTIMIZATION_LEVEL;
  void* value = reinterpret_cast<void*>(static_cast<uintptr_t>(3));
  DRV(cuModuleLoadDataEx(&ptx, ptx_text.data(), 1, &option, &value));
  vector_add(ptx, "PTX text (cuModuleLoadDataEx)", stream);
  // PTX compiled at run time by NVRTC, as Triton, CuPy's raw kernels and other JIT users make it.
  {
    const char* source =
        "extern \"C\" __global__ void vector_add(const float* a, const float* b, float* c, int n) {\n"
        "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
        "  if (i < n) c[i] = a[i] + b[i];\n"
        "}\n";
    nvrtcProgram program = nullptr;
    const char* options[] = {"--gpu-architecture=compute_90"};
    size_t ptx_size = 0;
    const bool compiled = nvrtcCreateProgram(&program, source, "vector_add.cu", 0, nullptr, nullptr) == NVRTC_SUCCESS &&
                          nvrtcCompileProgram(program, 1, options) == NVRTC_SUCCESS &&
                          nvrtcGetPTXSize(program, &ptx_size) == NVRTC_SUCCESS;
    std::vector<char> jit_ptx(ptx_size + 1, '\0');
    expect(compiled && nvrtcGetPTX(program, jit_ptx.data()) == NVRTC_SUCCESS, "NVRTC compiles vector_add to PTX");
    nvrtcDestroyProgram(&program);
    CUmodule jit = nullptr;
    DRV(cuModuleLoadData(&jit, jit_ptx.data()));
    vector_add(jit, "PTX NVRTC compiled (cuModuleLoadData)", stream);
    DRV(cuModuleUnload(jit));
  }
  CUfunction missing = nullptr;
  expect(cuModuleGetFunction(&missing, cubin, "no_such_kernel") == CUDA_ERROR_NOT_FOUND,
         "a kernel the module lacks is CUDA_ERROR_NOT_FOUND");
  CUfunction add = nullptr;
  DRV(cuModuleGetFunction(&add, cubin, "vector_add"));
  int threads = 0;
  DRV(cuFuncGetAttribute(&threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, add));
  expect(threads > 0, "cuFuncGetAttribute answers the function's block limit");
  {
    CUdeviceptr out = 0;
    DRV(cuMemAlloc(&out, 64 * sizeof(float)));
    int n = 64;
    void* params[] = {&out, &out, &out, &n};
    CUlaunchAttribute attribute = {};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PRIORITY;
    attribute.value.priority = -1;
    CUlaunchConfig config = {};
    config.gridDimX = config.gridDimY = config.gridDimZ = 1;
    config.blockDimX = 64;
    config.blockDimY = config.blockDimZ = 1;
    config.hStream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    DRV(cuMemsetD8Async(out, 0, 64 * sizeof(float), stream));
    DRV(cuLaunchKernelEx(&config, add, params, nullptr));
    DRV(cuStreamSynchronize(stream));
    attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attribute.value.clusterDim.x = 2;
    attribute.value.clusterDim.y = attribute.value.clusterDim.z = 1;
    expect(cuLaunchKernelEx(&config, add, params, nullptr) == CUDA_ERROR_NOT_SUPPORTED,
           "cuLaunchKernelEx runs with a priority and refuses a cluster it cannot carry");
    DRV(cuMemFree(out));
  }
  DRV(cuModuleUnload(ptx));
  expect(cuModuleUnload(ptx) == CUDA_ERROR_INVALID_HANDLE, "an unloaded module is an invalid handle");

  // Pinned memory, events, memsets, ranges and pointer attributes.
  float* pinned = nullptr;
  DRV(cuMemAllocHost(reinterpret_cast<void**>(&pinned), 1 << 20));
  CUdeviceptr buffer = 0;
  DRV(cuMemAlloc(&buffer, 1 << 20));
  CUevent start = nullptr, end = nullptr;
  DRV(cuEventCreate(&start, CU_EVENT_DEFAULT));
  DRV(cuEventCreate(&end, CU_EVENT_DEFAULT));
  DRV(cuEventRecord(start, stream));
  DRV(cuMemsetD8Async(buffer, 0x5a, 1 << 20, stream));
  DRV(cuMemcpyDtoHAsync(pinned, buffer, 1 << 20, stream));
  DRV(cuEventRecord(end, stream));
  DRV(cuEventSynchronize(end));
  float ms = -1;
  DRV(cuEventElapsedTime(&ms, start, end));
  unsigned word = 0;
  std::memcpy(&word, reinterpret_cast<char*>(pinned) + 4096, sizeof word);
  expect(word == 0x5a5a5a5au && ms >= 0, "an asynchronous memset and copy into pinned memory, timed by events");
  // Wide memsets: 32- and 16-bit words, then what alignment forbids.
  DRV(cuMemsetD32(buffer, 0x12345678u, 16));
  DRV(cuMemsetD16Async(buffer + 64, 0xbeef, 8, stream));
  unsigned words[20] = {};
  DRV(cuStreamSynchronize(stream));
  DRV(cuMemcpyDtoH(words, buffer, sizeof words));
  expect(words[0] == 0x12345678u && words[15] == 0x12345678u && words[16] == 0xbeefbeefu && words[19] == 0xbeefbeefu,
         "cuMemsetD32 and cuMemsetD16Async set whole words");
  expect(cuMemsetD32(buffer + 2, 0, 4) == CUDA_ERROR_INVALID_VALUE, "a misaligned cuMemsetD32 is CUDA_ERROR_INVALID_VALUE");
  CUdeviceptr base = 0;
  size_t bytes = 0;
  DRV(cuMemGetAddressRange(&base, &bytes, buffer + 1000));
  unsigned type = 0;
  DRV(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, buffer + 1000));
  expect(base == buffer && bytes == (1u << 20) && type == CU_MEMORYTYPE_DEVICE, "the allocation's range and memory type");
  expect(cuMemFree(buffer + 8) == CUDA_ERROR_INVALID_VALUE, "freeing inside an allocation is CUDA_ERROR_INVALID_VALUE");
  // A pitched 2D round trip: rows of 100 bytes, into padded device rows and back.
  {
    CUdeviceptr pitched = 0;
    size_t pitch = 0;
    DRV(cuMemAllocPitch(&pitched, &pitch, 100, 8, 4));
    std::vector<unsigned char> rows(100 * 8), back(100 * 8, 0);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<unsigned char>(i * 7);
    CUDA_MEMCPY2D in = {};
    in.srcMemoryType = CU_MEMORYTYPE_HOST;
    in.srcHost = rows.data();
    in.srcPitch = 100;
    in.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    in.dstDevice = pitched;
    in.dstPitch = pitch;
    in.WidthInBytes = 100;
    in.Height = 8;
    DRV(cuMemcpy2D(&in));
    CUDA_MEMCPY2D out = {};
    out.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    out.srcDevice = pitched;
    out.srcPitch = pitch;
    out.dstMemoryType = CU_MEMORYTYPE_HOST;
    out.dstHost = back.data();
    out.dstPitch = 100;
    out.WidthInBytes = 100;
    out.Height = 8;
    DRV(cuMemcpy2DAsync(&out, stream));
    DRV(cuStreamSynchronize(stream));
    expect(pitch >= 100 && back == rows, "cuMemcpy2D into pitched device memory and cuMemcpy2DAsync back");
    out.srcPitch = size_t{1} << 62;
    expect(cuMemcpy2D(&out) == CUDA_ERROR_INVALID_VALUE, "a 2D copy whose rows overflow the address space is refused");
    DRV(cuMemFree(pitched));
    std::vector<char> pageable(4096);
    DRV(cuMemHostRegister(pageable.data(), pageable.size(), 0));
    DRV(cuMemHostUnregister(pageable.data()));
  }

  // A host function on the stream: the copy queued after it starts only once it has returned.
  static float seen = -1;
  DRV(cuMemsetD8Async(buffer, 0, 16, stream));
  DRV(cuLaunchHostFunc(stream, [](void* data) { seen = *static_cast<float*>(data); *static_cast<float*>(data) = 42; },
                       pinned));
  DRV(cuMemcpyHtoDAsync(buffer, pinned, sizeof(float), stream));
  DRV(cuMemcpyDtoHAsync(pinned + 1, buffer, sizeof(float), stream));
  DRV(cuStreamSynchronize(stream));
  expect(pinned[1] == 42 && seen != 42, "cuLaunchHostFunc runs in stream order: the copy after it sees what it wrote");
  DRV(cuMemFree(buffer));
  DRV(cuMemFreeHost(pinned));
  DRV(cuEventDestroy(start));
  DRV(cuEventDestroy(end));

  // cuGetProcAddress hands out the served functions, the version a caller's CUDA expects.
  void* function = nullptr;
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  DRV(cuGetProcAddress("cuLaunchKernel", &function, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  expect(function == reinterpret_cast<void*>(&cuLaunchKernel) && status == CU_GET_PROC_ADDRESS_SUCCESS,
         "cuGetProcAddress(cuLaunchKernel) is the shim's cuLaunchKernel");
  DRV(cuGetProcAddress("cuMemAlloc", &function, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  expect(function == reinterpret_cast<void*>(&cuMemAlloc_v2), "cuGetProcAddress(cuMemAlloc, 12.0) is cuMemAlloc_v2");
  expect(cuGetProcAddress("cuArrayCreate", &function, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &status) == CUDA_ERROR_NOT_FOUND &&
             function == nullptr,
         "a function the broker does not serve is CUDA_ERROR_NOT_FOUND");

  // The runtime beside it: one process, one set of objects.
  cudaStream_t runtime_stream = nullptr;
  expect(cudaStreamCreate(&runtime_stream) == cudaSuccess, "cudaStreamCreate");
  CUdeviceptr from_driver = 0;
  DRV(cuMemAlloc(&from_driver, 4 * sizeof(float)));
  float* from_runtime = nullptr;
  expect(cudaMalloc(reinterpret_cast<void**>(&from_runtime), 4 * sizeof(float)) == cudaSuccess, "cudaMalloc");
  const float four[4] = {1, 2, 3, 4};
  expect(cudaMemcpy(from_runtime, four, sizeof four, cudaMemcpyHostToDevice) == cudaSuccess, "cudaMemcpy to the device");
  int n = 4;
  CUdeviceptr runtime_pointer = reinterpret_cast<CUdeviceptr>(from_runtime);
  void* params[] = {&runtime_pointer, &runtime_pointer, &from_driver, &n};
  DRV(cuLaunchKernel(add, 1, 1, 1, 32, 1, 1, 0, reinterpret_cast<CUstream>(runtime_stream), params, nullptr));
  expect(cudaStreamSynchronize(runtime_stream) == cudaSuccess, "cudaStreamSynchronize of the stream cuLaunchKernel used");
  float doubled[4] = {};
  expect(cudaMemcpy(doubled, reinterpret_cast<void*>(from_driver), sizeof doubled, cudaMemcpyDefault) == cudaSuccess &&
             doubled[3] == 8,
         "a kernel launched by the driver API on a runtime stream, over runtime memory, into driver memory");
  expect(cudaFree(reinterpret_cast<void*>(from_driver)) == cudaSuccess, "cudaFree of memory from cuMemAlloc");
  DRV(cuMemFree(reinterpret_cast<CUdeviceptr>(from_runtime)));
  expect(cudaStreamDestroy(runtime_stream) == cudaSuccess, "cudaStreamDestroy");

  // cudaDeviceReset, as NVIDIA's samples end: the memory the process holds on the device is freed.
  void* left = nullptr;
  expect(cudaMalloc(&left, 1 << 20) == cudaSuccess, "cudaMalloc before the reset");
  CUdeviceptr left_base = 0;
  expect(cudaDeviceReset() == cudaSuccess &&
             cuMemGetAddressRange(&left_base, nullptr, reinterpret_cast<CUdeviceptr>(left)) == CUDA_ERROR_NOT_FOUND,
         "cudaDeviceReset frees what the process held on the device");

  // A thread the runtime works on has the device's primary context current, as in CUDA.
  std::thread([] {
    expect(cudaSetDevice(0) == cudaSuccess && cudaFree(nullptr) == cudaSuccess, "the runtime on another thread");
    CUcontext primary = nullptr, retained = nullptr;
    cuCtxGetCurrent(&primary);
    cuDevicePrimaryCtxRetain(&retained, 0);
    expect(primary != nullptr && primary == retained, "there, the current context is the device's primary context");
    cuDevicePrimaryCtxRelease(0);
  }).join();

  DRV(cuStreamDestroy(stream));
  DRV(cuModuleUnload(cubin));
  DRV(cuModuleUnload(fatbin));
  DRV(cuCtxSynchronize());
  DRV(cuCtxDestroy(context));
  expect(cuCtxDestroy(context) == CUDA_ERROR_INVALID_CONTEXT, "a destroyed context is CUDA_ERROR_INVALID_CONTEXT");
  std::printf("%s: %d failed\n", failures == 0 ? "PASSED" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
