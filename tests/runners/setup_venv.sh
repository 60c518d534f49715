#!/usr/bin/env bash
# Installs the real-runner fixture into a virtual environment: the prebuilt CUDA 12 llama.cpp of
# the PyPI wheel cyllama-cuda12 (pinned, --no-deps: its libraries are the runner, the rest of its
# Python dependencies are not needed), and gguf (the model writer of make_model.py) with numpy.
#   tests/runners/setup_venv.sh VENV_DIR [--native]
# --native adds NVIDIA's CUDA 12 runtime and cuBLAS from PyPI (about 600 MB), the native side of
# the GPU comparison (tests/gpu/runners.sh); setup.sh asks for it where a GPU is present.
# Safe to run again: does nothing when the pinned versions are there. Fails (exit 1) when PyPI
# cannot be reached; the runner tests then report that they were skipped.
set -euo pipefail
venv=$1
native=${2:-}
runner='cyllama-cuda12==0.2.18'
writer=('gguf==0.19.0' 'numpy>=1.26,<3')
nvidia=('nvidia-cuda-runtime-cu12==12.9.*' 'nvidia-cublas-cu12==12.9.*')

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null; then  # already there
from importlib import metadata
assert metadata.version("cyllama-cuda12") == "0.2.18"
assert metadata.version("gguf") == "0.19.0"
PY
  if [ "$native" != --native ] || "$venv/bin/python" -c 'import nvidia.cublas, nvidia.cuda_runtime' 2>/dev/null; then
    exit 0
  fi
fi
extra=""
[ "$native" = --native ] && extra=" and ${nvidia[*]}"
echo "setup: installing $runner and ${writer[*]}$extra into $venv" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$runner"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${writer[@]}"
if [ "$native" = --native ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${nvidia[@]}"
fi
