#include "sim/device_profile.h"

#include <array>

#include <fmt/format.h>

namespace gpubroker::sim {
namespace {

// H100 SXM5 80GB as the driver describes it. Index = attribute value; entries not listed are 0.
struct AttributeTable {
  std::array<int, kAttributeEnd> values{};
  constexpr AttributeTable() {
    auto set = [this](int attribute, int value) { values[static_cast<std::size_t>(attribute)] = value; };
    set(1, kMaxThreadsPerBlock);
    set(2, static_cast<int>(kMaxBlockDim[0]));
    set(3, static_cast<int>(kMaxBlockDim[1]));
    set(4, static_cast<int>(kMaxBlockDim[2]));
    set(5, static_cast<int>(kMaxGridDim[0]));
    set(6, static_cast<int>(kMaxGridDim[1]));
    set(7, static_cast<int>(kMaxGridDim[2]));
    set(8, kSharedPerBlock);
    set(9, 65536);        // total constant memory
    set(10, 32);          // warp size
    set(11, 2147483647);  // max pitch
    set(12, 65536);       // registers per block
    set(13, 1980000);     // clock rate, kHz
    set(14, 512);         // texture alignment
    set(15, 1);           // GPU overlap
    set(16, kMultiprocessors);
    set(17, 0);  // kernel exec timeout (no display)
    set(18, 0);  // integrated
    set(19, 1);  // can map host memory
    set(20, 0);  // compute mode: default
    set(21, 131072);  // texture 1D width
    set(22, 131072);  // texture 2D width, height
    set(23, 65536);
    set(24, 16384);  // texture 3D
    set(25, 16384);
    set(26, 16384);
    set(27, 32768);  // texture 2D layered
    set(28, 32768);
    set(29, 2048);
    set(30, 512);  // surface alignment
    set(31, 1);    // concurrent kernels
    set(32, 1);    // ECC enabled
    // 33 (PCI bus id) depends on the ordinal: device_attribute() fills it in.
    set(34, 0);        // PCI device id (the device number of bus:device.function)
    set(35, 0);        // TCC driver
    set(36, 2619000);  // memory clock, kHz
    set(37, 5120);     // memory bus width, bits
    set(38, 52428800);  // L2, 50 MiB
    set(39, kMaxThreadsPerMultiprocessor);
    set(40, 3);  // async engines
    set(41, 1);  // unified addressing
    set(42, 32768);  // texture 1D layered
    set(43, 2048);
    set(44, 0);      // deprecated
    set(45, 32768);  // texture 2D gather
    set(46, 32768);
    set(47, 8192);  // texture 3D alternate
    set(48, 8192);
    set(49, 32768);
    set(50, 0);    // PCI domain
    set(51, 32);   // texture pitch alignment
    set(52, 32768);  // cubemap
    set(53, 32768);
    set(54, 2046);
    set(55, 32768);  // surface 1D
    set(56, 131072);  // surface 2D
    set(57, 65536);
    set(58, 16384);  // surface 3D
    set(59, 16384);
    set(60, 16384);
    set(61, 32768);  // surface 1D layered
    set(62, 2048);
    set(63, 32768);  // surface 2D layered
    set(64, 32768);
    set(65, 2048);
    set(66, 32768);  // surface cubemap
    set(67, 32768);
    set(68, 2046);
    set(69, 268435456);  // texture 1D linear (deprecated)
    set(70, 131072);     // texture 2D linear
    set(71, 65000);
    set(72, 2097120);
    set(73, 32768);  // texture 2D mipmapped
    set(74, 32768);
    set(75, 9);  // compute capability 9.0
    set(76, 0);
    set(77, 32768);  // texture 1D mipmapped
    set(78, 1);      // stream priorities
    set(79, 1);      // global L1
    set(80, 1);      // local L1
    set(81, kSharedPerMultiprocessor);
    set(82, kRegistersPerMultiprocessor);
    set(83, 1);  // managed memory
    set(84, 0);  // multi-GPU board
    // 85 (board group id) = ordinal.
    set(86, 0);  // host native atomics (PCIe host)
    set(87, 2);  // single to double precision ratio
    set(88, 0);  // pageable memory access (no HMM)
    set(89, 1);  // concurrent managed access
    set(90, 1);  // compute preemption
    set(91, 1);  // host pointer usable for registered memory
    set(92, 1);  // stream mem ops v1 (deprecated attributes)
    set(93, 1);
    set(94, 1);
    set(95, 1);  // cooperative launch
    set(96, 1);  // cooperative multi-device launch
    set(97, kSharedPerBlockOptin);
    set(98, 0);  // flush remote writes
    set(99, 1);  // host register
    set(100, 0);
    set(101, 0);
    set(102, 1);  // virtual memory management
    set(103, 1);  // POSIX file descriptor handles
    set(104, 0);  // Win32 handles
    set(105, 0);
    set(106, kMaxBlocksPerMultiprocessor);
    set(107, 1);          // generic compression
    set(108, 39321600);   // max persisting L2 (75% of L2)
    set(109, 134213632);  // max access policy window
    set(110, 1);          // GPUDirect RDMA with VMM
    set(111, kReservedSharedPerBlock);
    set(112, 1);    // sparse arrays
    set(113, 1);    // read-only host register
    set(114, 1);    // timeline semaphore interop
    set(115, 1);    // memory pools
    set(116, 1);    // GPUDirect RDMA
    set(117, 1);    // RDMA flush writes options: host
    set(118, 100);  // RDMA writes ordering: owner
    set(119, 1);    // mempool handle types: POSIX fd
    set(120, 1);    // cluster launch
    set(121, 1);    // deferred mapping arrays
    set(122, 1);    // 64-bit stream mem ops
    set(123, 1);    // wait value NOR
    set(124, 1);    // dma_buf
    set(125, 1);    // IPC events
    set(126, 4);    // memory sync domains
    set(127, 1);    // tensor map access
    set(128, 0);    // fabric handles
    set(129, 1);    // unified function pointers
    set(130, 0);    // NUMA config: none
    set(131, -1);   // NUMA id
    set(132, 0);    // multicast
    set(133, 0);    // MPS
    set(134, 0);    // host NUMA id
    set(135, 0);    // D3D12 CIG
    set(136, 0);    // decompression engine (Blackwell)
    set(137, 0);
    set(138, 0);  // Vulkan CIG
    set(139, static_cast<int>(0x233010DEu));  // device 0x2330 (H100 SXM5 80GB), vendor 0x10DE
    set(140, static_cast<int>(0x16C110DEu));  // subsystem 0x16C1, vendor 0x10DE
    set(141, 1);  // host NUMA VMM
    set(142, 1);  // host NUMA memory pools
    set(143, 0);  // multi-node IPC
    set(144, 1);  // host memory pools
    set(145, 1);  // host VMM
    set(146, 0);  // host alloc dma_buf
    set(147, 0);  // partial host native atomics
  }
};

constexpr AttributeTable kAttributes;

// Buses of the eight GPUs of an HGX H100 board; devices past the eighth continue at 0xE0.
constexpr std::array<int, 8> kBoardBuses = {0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB};

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::optional<int> device_attribute(cuda::CUdevice_attribute attribute, int ordinal) {
  if (attribute < 1 || attribute >= kAttributeEnd) return std::nullopt;
  if (attribute == cuda::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID) return pci_bus(ordinal);
  if (attribute == cuda::CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID) return ordinal;
  return kAttributes.values[static_cast<std::size_t>(attribute)];
}

int pci_bus(int ordinal) {
  if (ordinal >= 0 && ordinal < static_cast<int>(kBoardBuses.size()))
    return kBoardBuses[static_cast<std::size_t>(ordinal)];
  return 0xE0 + (ordinal - static_cast<int>(kBoardBuses.size()));
}

std::string pci_bus_id(int ordinal) { return fmt::format("0000:{:02X}:00.0", pci_bus(ordinal)); }

cuda::CUuuid device_uuid(int ordinal) {
  std::uint64_t state = 0x67707562726F6B65ull + static_cast<std::uint64_t>(ordinal);  // "gpubroke"
  cuda::CUuuid uuid{};
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = splitmix64(state);
    for (int i = 0; i < 8; ++i) uuid.bytes[half * 8 + i] = static_cast<char>(bits >> (8 * i));
  }
  uuid.bytes[6] = static_cast<char>((uuid.bytes[6] & 0x0F) | 0x40);  // version 4
  uuid.bytes[8] = static_cast<char>((uuid.bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  return uuid;
}

}  // namespace gpubroker::sim
