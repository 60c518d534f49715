#!/bin/sh
# Starts a runner the way Ollama does: its own library directory, which holds the real CUDA
# runtime, prepended to LD_LIBRARY_PATH; then execs the runner.
#   ollama_like_parent.sh REAL_LIBCUDART CHILD [ARGS...]
set -eu
real=$1; shift
dir=$(mktemp -d /tmp/gpubroker-ollama-XXXXXX)/real-runtime
mkdir -p "$dir"
ln -s "$real" "$dir/$(basename "$real")"
LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$@"
