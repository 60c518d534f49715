// What every compile-time ABI check translation unit shares. Each check source under
// tests/cuda_abi/ is compiled twice, once per CUDA major version, with that version's NVIDIA
// include directory on its command line and GPUBROKER_CHECK_CUDA_MAJOR set to 12 or 13; it
// includes NVIDIA's headers and runtime_abi.h side by side and static_asserts that they agree.
// The compilation is the check; the Catch2 test only reports how many assertions each unit holds.
#pragma once

// cuda_abi_test.cc, which only reports, defines GPUBROKER_ABI_REPORT instead.
#if !defined(GPUBROKER_CHECK_CUDA_MAJOR) && !defined(GPUBROKER_ABI_REPORT)
#error "compile with -DGPUBROKER_CHECK_CUDA_MAJOR=12 or 13"
#endif

#define GPUBROKER_ABI_CONCAT_INNER(a, b) a##b
#define GPUBROKER_ABI_CONCAT(a, b) GPUBROKER_ABI_CONCAT_INNER(a, b)
// check_name(enums) is enums_12 or enums_13: one symbol per unit and version.
#define GPUBROKER_ABI_CHECK_NAME(name) \
  GPUBROKER_ABI_CONCAT(GPUBROKER_ABI_CONCAT(name, _), GPUBROKER_CHECK_CUDA_MAJOR)

// Every check consumes one __COUNTER__ value, so that a unit can say how many it holds.
#define GPUBROKER_ABI_ASSERT(condition, message) \
  static_assert(__COUNTER__ >= 0 && (condition), message)

// An enumerator (or constant) of ours has NVIDIA's value and type size.
#define GPUBROKER_ABI_SAME_VALUE(name)                                                  \
  GPUBROKER_ABI_ASSERT(static_cast<long long>(::gpubroker::cuda::rt::name) ==          \
                               static_cast<long long>(::name) &&                       \
                           sizeof(::gpubroker::cuda::rt::name) == sizeof(::name),      \
                       #name " differs from NVIDIA's")

// A field of our struct sits at NVIDIA's offset with NVIDIA's size.
#define GPUBROKER_ABI_SAME_FIELD(ours, theirs, field)                                    \
  GPUBROKER_ABI_ASSERT(offsetof(ours, field) == offsetof(theirs, field) &&              \
                           sizeof(ours::field) == sizeof(theirs::field),                \
                       #ours "::" #field " is not where NVIDIA's " #theirs " has it")

#define GPUBROKER_ABI_SAME_SIZE(ours, theirs)                                    \
  GPUBROKER_ABI_ASSERT(sizeof(ours) == sizeof(theirs) &&                          \
                           alignof(ours) == alignof(theirs),                      \
                       "sizeof/alignof " #ours " differs from NVIDIA's " #theirs)

// A field of our struct sits at a measured offset with a measured size (the reference tables).
#define GPUBROKER_ABI_FIELD_AT(ours, field, offset, size)                         \
  GPUBROKER_ABI_ASSERT(offsetof(ours, field) == (offset) && sizeof(ours::field) == (size), \
                       #ours "::" #field " is not where the reference table has it")

namespace gpubroker::cuda_abi_test {

// What one unit checked, for the test's report.
struct CheckSummary {
  const char* what;
  int compile_time_checks;
  bool run_time_checks_passed;  // checks that cannot be constant expressions (pointer constants)
};

// One per unit and version; defined by the units, called by cuda_abi_test.cc.
CheckSummary device_prop_12();
CheckSummary struct_layouts_12();
CheckSummary enums_12();
CheckSummary flags_12();
CheckSummary device_prop_13();
CheckSummary struct_layouts_13();
CheckSummary enums_13();
CheckSummary flags_13();

}  // namespace gpubroker::cuda_abi_test
