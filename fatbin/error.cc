#include "fatbin/error.h"

namespace gpubroker::fatbin {

const char* to_string(FatbinErrc code) {
  switch (code) {
    case FatbinErrc::kNotAnImage: return "not a fatbin, cubin or PTX image";
    case FatbinErrc::kUnsupportedVersion: return "unsupported container version";
    case FatbinErrc::kTruncated: return "truncated";
    case FatbinErrc::kBadHeader: return "header invalid";
    case FatbinErrc::kEntryOutOfBounds: return "entry runs past its container";
    case FatbinErrc::kTooLarge: return "uncompressed size too large";
    case FatbinErrc::kUnsupportedCompression: return "unsupported compression";
    case FatbinErrc::kBadCompressedData: return "corrupt compressed data";
    case FatbinErrc::kMalformedElf: return "malformed cubin";
    case FatbinErrc::kBadParamInfo: return "malformed kernel parameter records";
    case FatbinErrc::kMalformedPtx: return "malformed PTX";
    case FatbinErrc::kNoCompatibleImage: return "no image for this architecture";
    case FatbinErrc::kOutOfMemory: return "out of memory";
  }
  return "unknown error";
}

std::string describe(const FatbinError& error) {
  std::string text = to_string(error.code);
  if (!error.detail.empty()) {
    text += ": ";
    text += error.detail;
  }
  return text;
}

}  // namespace gpubroker::fatbin
