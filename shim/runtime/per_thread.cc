// The per-thread-default-stream entry points (`_ptsz`, `_ptds`), which programs built with
// --default-stream per-thread call. The session's default stream already stands for handles 0,
// cudaStreamLegacy and cudaStreamPerThread alike (DESIGN.md: default streams belong to the
// session), so each forwards to the plain function unchanged.
#include <cstddef>

extern "C" {
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaMemcpyAsync(void*, const void*, std::size_t, int, void*);
int cudaMemset(void*, int, std::size_t);
int cudaMemsetAsync(void*, int, std::size_t, void*);
int cudaMemcpy2D(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t, int);
int cudaMemcpy2DAsync(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t, int, void*);
int cudaMemset2D(void*, std::size_t, int, std::size_t, std::size_t);
int cudaMemset2DAsync(void*, std::size_t, int, std::size_t, std::size_t, void*);
int cudaStreamSynchronize(void*);
int cudaStreamQuery(void*);
int cudaStreamWaitEvent(void*, void*, unsigned);
int cudaEventRecord(void*, void*);
int cudaMallocAsync(void**, std::size_t, void*);
int cudaFreeAsync(void*, void*);

int cudaMemcpy_ptds(void* d, const void* s, std::size_t n, int k) { return cudaMemcpy(d, s, n, k); }
int cudaMemcpyAsync_ptsz(void* d, const void* s, std::size_t n, int k, void* st) { return cudaMemcpyAsync(d, s, n, k, st); }
int cudaMemset_ptds(void* p, int v, std::size_t n) { return cudaMemset(p, v, n); }
int cudaMemsetAsync_ptsz(void* p, int v, std::size_t n, void* st) { return cudaMemsetAsync(p, v, n, st); }
int cudaMemcpy2D_ptds(void* d, std::size_t dp, const void* s, std::size_t sp, std::size_t w, std::size_t h, int k) {
  return cudaMemcpy2D(d, dp, s, sp, w, h, k);
}
int cudaMemcpy2DAsync_ptsz(void* d, std::size_t dp, const void* s, std::size_t sp, std::size_t w, std::size_t h, int k,
                           void* st) {
  return cudaMemcpy2DAsync(d, dp, s, sp, w, h, k, st);
}
int cudaMemset2D_ptds(void* p, std::size_t pitch, int v, std::size_t w, std::size_t h) {
  return cudaMemset2D(p, pitch, v, w, h);
}
int cudaMemset2DAsync_ptsz(void* p, std::size_t pitch, int v, std::size_t w, std::size_t h, void* st) {
  return cudaMemset2DAsync(p, pitch, v, w, h, st);
}
int cudaStreamSynchronize_ptsz(void* st) { return cudaStreamSynchronize(st); }
int cudaStreamQuery_ptsz(void* st) { return cudaStreamQuery(st); }
int cudaStreamWaitEvent_ptsz(void* st, void* e, unsigned f) { return cudaStreamWaitEvent(st, e, f); }
int cudaEventRecord_ptsz(void* e, void* st) { return cudaEventRecord(e, st); }
int cudaMallocAsync_ptsz(void** p, std::size_t n, void* st) { return cudaMallocAsync(p, n, st); }
int cudaFreeAsync_ptsz(void* p, void* st) { return cudaFreeAsync(p, st); }
}
