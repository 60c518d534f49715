// What a CUDA program sees inside a container: the libcudart it is bound to, the NVIDIA device
// nodes there are (none, given gpubroker's CDI device), the devices CUDA reports, and for each a
// copy there and back through device memory.
//   cdi_probe
// Prints one "key: value" line per fact. Exits 0 when CUDA reports at least one device and every
// copy came back intact, 3 when it reports none (with the error it gave), 1 on any other failure.
#include <cuda_runtime.h>
#include <dirent.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static bool check(cudaError_t status, const char* what, int device) {
  if (status == cudaSuccess) return true;
  std::printf("FAILED: device %d: %s: %s: %s\n", device, what, cudaGetErrorName(status), cudaGetErrorString(status));
  return false;
}

static std::string nvidia_device_nodes() {
  std::string nodes;
  if (DIR* dev = opendir("/dev"); dev != nullptr) {
    while (const dirent* entry = readdir(dev)) {
      if (std::strncmp(entry->d_name, "nvidia", 6) == 0) nodes += std::string(nodes.empty() ? "" : " ") + "/dev/" + entry->d_name;
    }
    closedir(dev);
  }
  return nodes.empty() ? "none" : nodes;
}

static std::string uuid_text(const cudaUUID_t& uuid) {
  const auto* u = reinterpret_cast<const unsigned char*>(uuid.bytes);
  char text[64];
  std::snprintf(text, sizeof text, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return text;
}

int main() {
  Dl_info runtime{};
  if (dladdr(reinterpret_cast<void*>(&cudaGetDeviceCount), &runtime) != 0 && runtime.dli_fname != nullptr) {
    std::printf("runtime: %s\n", runtime.dli_fname);
  }
  std::printf("nvidia device nodes: %s\n", nvidia_device_nodes().c_str());
  int count = 0;
  const cudaError_t counted = cudaGetDeviceCount(&count);
  std::printf("devices: %d\n", counted == cudaSuccess ? count : 0);
  if (counted != cudaSuccess) {
    std::printf("cudaGetDeviceCount: %s: %s\n", cudaGetErrorName(counted), cudaGetErrorString(counted));
    return 3;
  }
  if (count == 0) return 3;
  const size_t bytes = 1 << 20;
  std::vector<unsigned char> out(bytes), back(bytes);
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<unsigned char>(i * 13 + 5);
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    void* memory = nullptr;
    if (!check(cudaGetDeviceProperties(&prop, d), "cudaGetDeviceProperties", d) || !check(cudaSetDevice(d), "cudaSetDevice", d) ||
        !check(cudaMalloc(&memory, bytes), "cudaMalloc", d) ||
        !check(cudaMemcpy(memory, out.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device", d) ||
        !check(cudaMemcpy(back.data(), memory, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy from the device", d) ||
        !check(cudaFree(memory), "cudaFree", d)) {
      return 1;
    }
    const bool intact = std::memcmp(out.data(), back.data(), bytes) == 0;
    std::printf("device %d: %s %s: round trip of %zu bytes %s\n", d, prop.name, uuid_text(prop.uuid).c_str(), bytes,
                intact ? "intact" : "CORRUPTED");
    if (!intact) return 1;
  }
  return 0;
}
