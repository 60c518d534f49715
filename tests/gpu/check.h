// OK(call) for the GPU bench programs: a CUDA runtime call that fails ends the program (exit 1),
// naming the call and the error.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define OK(call)                                                                                  \
  do {                                                                                            \
    const cudaError_t e = (call);                                                                 \
    if (e != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)
