// Prints the call table (gpubroker/calls/protocol.h) one row a line, for make_request_corpus.py:
// name, kind number, inline payload bounds, staging way and posting, tab-separated. The corpus is
// written from these rows, so a renumbered or resized call cannot leave the seeds behind.
#include <cstdio>

#include "gpubroker/calls/protocol.h"

int main() {
  using namespace gpubroker::wire;
  for (const RequestShape& s : kRequestShapes) {
    const char* staging = s.staging == Staging::kNone ? "none" : s.staging == Staging::kToBroker ? "to_broker" : "from_broker";
    std::printf("%.*s\t%u\t%u\t%u\t%s\t%s\n", static_cast<int>(s.name.size()), s.name.data(),
                static_cast<unsigned>(s.kind), static_cast<unsigned>(s.min_payload), static_cast<unsigned>(s.max_payload),
                staging, s.posting == Posting::kMayPost ? "may_post" : "call");
  }
  return 0;
}
