#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need on Debian 12, then configures
# the build directories. Safe to run again; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ meson ninja-build pkg-config git
  libboost-dev libfmt-dev catch2
  libsystemd-dev liblz4-dev libzstd-dev libncurses-dev
  tmux systemd  # the operation tests: broker-top in a terminal, systemd-analyze verify
  python3-venv  # the real-runner fixture (tests/runners/setup_venv.sh)
  clang llvm libclang-rt-14-dev
  gnuplot-nox  # the benchmark plots (tools/bench/plot.py)
  debhelper lintian  # the Debian package (dpkg-buildpackage, debian/) and its check (tests/package/)
  podman runc  # the CDI container test (runc: Debian 12's crun cannot run on hybrid cgroups)
  python3-yaml python3-kubernetes  # the CDI specification and Kubernetes manifest checks
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CUDA 12.9 runtime headers and libcudart.so.12 from PyPI: for the ABI checks and the CUDA 12 test
# programs (the shims themselves build without any toolkit). Missing PyPI is a warning: those
# tests then say they are skipped.
if [ -f scripts/setup-cuda12.sh ]; then
  bash scripts/setup-cuda12.sh >/dev/null || echo "setup: warning: CUDA 12.9 packages from PyPI unavailable"
fi

werror=true  # as CI builds: a warning fails here before it fails a fresh clone
[ -f build/build.ninja ] || meson setup build -Dwerror=$werror >/dev/null
[ -f build-asan/build.ninja ] || meson setup build-asan -Dbuildtype=debug -Dwerror=$werror \
  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
# The real-runner fixture (tests/runners/): llama.cpp's prebuilt CUDA 12 build from PyPI, in a
# virtual environment inside each build directory. Missing PyPI is a warning: those tests then say
# they are skipped.
native=""; nvidia-smi -L >/dev/null 2>&1 && native=--native  # the GPU comparison's NVIDIA libraries
for dir in build build-asan; do
  bash tests/runners/setup_venv.sh "$dir/runners-venv" $native ||
    echo "setup: warning: the real-runner fixture (cyllama-cuda12 from PyPI) could not be installed in $dir"
done
echo "setup: ready (build/ and build-asan/ configured)"
