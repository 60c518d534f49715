#!/usr/bin/env bash
# A bounded libFuzzer run: run_fuzzer.sh FUZZER SECONDS SEED_DIR...
# New inputs go to a temporary directory (the first corpus directory libFuzzer is given), so the
# committed seeds are never written. Exits with the fuzzer's status: non-zero on any crash, leak,
# sanitizer report or timeout, whose reproducer is left in the working directory.
set -uo pipefail
fuzzer=$1 seconds=$2; shift 2
work=$(mktemp -d /tmp/gpubroker-fuzz-corpus-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
  "$work" "$@" 2>&1 | grep -v '^#[0-9]*.*\(NEW\|REDUCE\|pulse\)'
exit "${PIPESTATUS[0]}"
