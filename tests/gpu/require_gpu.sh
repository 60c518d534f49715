# Sourced by the GPU scripts: exits 0, saying "$name: SKIPPED: ..." (name set by the caller),
# where there is no NVIDIA driver or no usable GPU. The driver is found through the loader's
# cache, or on LD_LIBRARY_PATH (tests/gpu/all.sh), never as the project's own driver shim.
has_driver() {
  ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1' && return 0
  local dir
  local IFS=": "
  for dir in ${LD_LIBRARY_PATH:-} /usr/lib/x86_64-linux-gnu /usr/local/nvidia/lib64; do
    [ -e "$dir/libcuda.so.1" ] && [ "$dir" != "${PWD}/${build}/shim/driver" ] && return 0
  done
  return 1
}
if ! has_driver; then
  echo "$name: SKIPPED: no NVIDIA driver (libcuda.so.1) on this host"
  exit 0
fi
if command -v nvidia-smi >/dev/null && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "$name: SKIPPED: nvidia-smi sees no usable GPU"
  exit 0
fi
