// libFuzzer entry point for the fatbin parser: whatever the bytes, parse_module (and through it
// list_entries, payload, the ELF and .nv.info readers and the PTX reader) must return a value or
// an error without a crash, a leak, undefined behaviour or a read out of bounds.
//
// Seeds: tests/data/fatbin (real nvcc fatbins, a cubin, PTX). Build and run from the repository
// root with Debian's clang (apt-get install clang; libFuzzer comes with it):
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//     -I. -Iinclude tests/fuzz/fatbin_fuzz.cc fatbin/*.cc \
//     $(pkg-config --cflags --libs fmt liblz4 libzstd) -o /tmp/fatbin_fuzz
//   mkdir -p /tmp/fatbin_corpus
//   /tmp/fatbin_fuzz -max_total_time=60 -max_len=65536 /tmp/fatbin_corpus tests/data/fatbin
//
// (libFuzzer writes new inputs to the first directory only, so the committed seeds stay as they
// are.) A configure with CXX=clang++ also builds this as tests/fatbin/fatbin_fuzz, with the parser
// instrumented for coverage, and runs it once over the seeds as the test `fatbin_fuzz_seeds`.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fatbin/fatbin.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  for (std::uint32_t device_arch : {90u, 120u}) {
    (void)gpubroker::fatbin::parse_module(bytes, device_arch);
  }
  (void)gpubroker::fatbin::container_size(bytes);
  return 0;
}
