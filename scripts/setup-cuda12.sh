#!/usr/bin/env bash
# Installs NVIDIA's CUDA 12.9 runtime headers and library, nvcc and CCCL from PyPI (into the
# python3 that is first on PATH, the one meson's tests/cuda_abi/meson.build asks), then prints the
# directory that holds cuda_runtime_api.h. Needs no GPU and no CUDA toolkit. Safe to run again:
# installs nothing that is already there. Reconfigure the build afterwards (meson setup
# --reconfigure build) so that the 12.x ABI checks are compiled.
set -euo pipefail

packages=(
  'nvidia-cuda-runtime-cu12==12.9.*'  # cuda_runtime_api.h, driver_types.h, libcudart.so.12
  'nvidia-cuda-nvcc-cu12==12.9.*'     # nvcc, crt/host_defines.h, fatbinary_section.h
  'nvidia-cuda-cccl-cu12==12.9.*'     # the headers nvcc needs to build real 12-ABI programs
)

installed() {
  python3 - "$@" <<'PY'
import sys
from importlib import metadata
for requirement in sys.argv[1:]:
    name, version = requirement.split("==")
    try:
        if not metadata.version(name).startswith(version.rstrip("*")):
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
}

if ! installed "${packages[@]}"; then
  echo "setup-cuda12: installing ${packages[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
fi

python3 - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("nvidia.cuda_runtime")
print(os.path.join(list(spec.submodule_search_locations)[0], "include"))
PY
