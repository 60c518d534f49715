// Errors of the fatbin parser, returned as values.
//
// Every fallible fatbin function returns Result<T>: a T or a FatbinError that names what was wrong
// with the input (FatbinErrc) and says where in words (`detail`, for logs). The parser never
// throws and never reads outside the bytes it was given; a malformed image is an error value. The
// CUDA-facing layers map FatbinErrc to the CUDA error their caller sees (most of them to
// CUDA_ERROR_INVALID_IMAGE; kNoCompatibleImage to CUDA_ERROR_NO_BINARY_FOR_GPU).
#pragma once

#include <boost/outcome/result.hpp>
#include <cstdint>
#include <string>

namespace gpubroker::fatbin {

enum class FatbinErrc : std::uint8_t {
  kNotAnImage,              // neither the fatbin magic nor an ELF or PTX image
  kUnsupportedVersion,      // a container header has a version other than 1
  kTruncated,               // the input ends before the end a container header declares
  kBadHeader,               // a container or entry header is too short or contradicts itself
  kEntryOutOfBounds,        // an entry's header or payload runs past the end of its container
  kTooLarge,                // an entry's uncompressed size is above kMaxUncompressedSize
  kUnsupportedCompression,  // the legacy compression, which this parser does not decode
  kBadCompressedData,       // decompression failed or gave a size other than the declared one
  kMalformedElf,            // a cubin's ELF headers, sections or symbols are out of bounds
  kBadParamInfo,            // a kernel's .nv.info records are malformed or skip an ordinal
  kMalformedPtx,            // PTX whose .entry parameter lists cannot be parsed
  kNoCompatibleImage,       // no cubin or PTX in the fatbin runs on the requested architecture
  kOutOfMemory,             // an allocation failed
};

struct FatbinError {
  FatbinErrc code;
  // What and where, e.g. "entry 1 at offset 15960: payload of 4096 bytes but 824 left in the
  // container".
  std::string detail;
};

[[nodiscard]] const char* to_string(FatbinErrc code);

// "entry header invalid: entry 0 at offset 16: header_size 12 is below 64" style text for logs.
[[nodiscard]] std::string describe(const FatbinError& error);

template <class T>
using Result = boost::outcome_v2::result<T, FatbinError, boost::outcome_v2::policy::terminate>;

}  // namespace gpubroker::fatbin
