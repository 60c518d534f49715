// Kernels whose parameter layouts the fatbin tests know (tests/fatbin/kernels_test.cc).
// No device variables: a module built from this file has no writable globals.
struct S {
  float values[6];  // 24 bytes, 4-byte aligned
};
struct Big {
  char bytes[5000];  // over 4352 bytes: ptxas writes 0x45 records instead of KPARAM_INFO
};
struct Small {
  int a;
  short b;  // 8 bytes with padding, 4-byte aligned
};

__global__ void kern(S s, float* out, int n, float scale) {
  if (threadIdx.x < n) out[threadIdx.x] = s.values[threadIdx.x % 6] * scale;
}

__global__ void big_params(Big b, int* out) { out[threadIdx.x] = b.bytes[threadIdx.x]; }

__global__ void mixed_large(Big b, int i, float f, double d, int* p, const float* q, Small s,
                            char c) {
  p[0] = b.bytes[i] + static_cast<int>(f + d + q[0]) + s.a + s.b + c;
}

__global__ void no_params() {}

template <class T>
__global__ void scale_by(T* data, T factor, int n) {
  if (threadIdx.x < n) data[threadIdx.x] *= factor;
}
template __global__ void scale_by<float>(float*, float, int);
template __global__ void scale_by<double>(double*, double, int);
