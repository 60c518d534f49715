// What a libcudart shim answers for a runtime function it does not implement: the export exists
// (so that a program linked against NVIDIA's runtime loads), logs its name once per process on
// stderr, and returns cudaErrorNotSupported (801).
//
// The stubs are generated (shim/abi/gen_exports.py writes one GPUBROKER_UNSUPPORTED_CUDA_FUNCTION
// per missing export). Each is declared `int name()` whatever NVIDIA's signature: on x86-64
// System V the caller owns and cleans up the argument registers and stack, and a cudaError_t
// comes back in eax, so ignoring the arguments and returning 801 is what the caller expects from
// a failing call. That does not hold for functions returning a pointer, a struct or a
// non-error integer; gen_exports.py refuses to stub those (its MUST_IMPLEMENT table).
//
// A stub records its 801 as the calling thread's last error, as the real runtime records a failed
// call's (cudaGetLastError and cudaPeekAtLastError return it), through the hook the runtime shim
// defines. Limit: a caller that ignores the 801 continues as if the call happened.
#pragma once

// Writes one line naming `name` to stderr the first time each name is passed in this process, and
// nothing afterwards. Any thread may call it, concurrently; it does not allocate, take a lock or
// block, so it is safe in static constructors and after fork. `name` must outlive the process
// (a string literal): the helper remembers the pointer.
extern "C" void gpubroker_log_unsupported_once(const char* name) noexcept;

// The same for any shim library (libcublas, libcuda, libnvidia-ml): the line names the library
// and the error the stub returns. `library` and `result` must be string literals.
extern "C" void gpubroker_log_unsupported_in(const char* name, const char* library, const char* result) noexcept;

// For a served function that fails (NVML's): one line the first time `name` fails in this process
// (or was logged by the functions above), saying what it returned. String literals, as above.
extern "C" void gpubroker_log_failure_once(const char* name, const char* library, const char* result) noexcept;

// Records the stub's call in the call trace (shim/trace/recorder.h) as unsupported: `library` is
// the string the stub logs ("CUDA driver", "cuBLAS", ...; nullptr for the runtime).
extern "C" void gpubroker_trace_unsupported(const char* name, const char* library, int result) noexcept;
extern "C" bool g_trace_enabled;

// A stub of a library whose status type is an int-sized enum: logs once, returns `value`.
#define GPUBROKER_UNSUPPORTED_FUNCTION(name, value, library, result)      \
  extern "C" __attribute__((visibility("default"))) int name() noexcept { \
    gpubroker_log_unsupported_in(#name, library, result);               \
    if (g_trace_enabled) gpubroker_trace_unsupported(#name, library, value); \
    return value;                                                       \
  }

// Defined by the runtime shims (shim/runtime/runtime_state.cc): records `error` as the calling
// thread's last error. Weak, so that a library or test that stubs names without a runtime links;
// null there.
extern "C" void gpubroker_runtime_record_error(int error) noexcept __attribute__((weak));

#define GPUBROKER_UNSUPPORTED_CUDA_FUNCTION(name)                                    \
  extern "C" __attribute__((visibility("default"))) int name() noexcept {              \
    gpubroker_log_unsupported_once(#name);                                           \
    if (g_trace_enabled) gpubroker_trace_unsupported(#name, nullptr, 801);           \
    if (gpubroker_runtime_record_error != nullptr) gpubroker_runtime_record_error(801); \
    return 801; /* cudaErrorNotSupported */                                          \
  }

// A per-thread-default-stream entry point (`_ptsz`, `_ptds`, which programs built with
// --default-stream per-thread call) of a function the shim implements: the session's default
// stream already stands for handles 0, cudaStreamLegacy and cudaStreamPerThread alike (default
// streams belong to the session), so the entry point is the plain function. It is a jump to it,
// which keeps every argument register and the stack as the caller left them, whatever the
// signature. gen_exports.py writes one per such export the shim does not implement itself.
#define GPUBROKER_PER_THREAD_ALIAS(name, base)                        \
  asm(".text\n"                                                       \
      ".globl " #name "\n"                                            \
      ".type " #name ", @function\n"                                  \
      ".p2align 4\n" #name ":\n"                                      \
      "\tendbr64\n"                                                   \
      "\tjmp " #base "@PLT\n"                                         \
      ".size " #name ", . - " #name "\n");
