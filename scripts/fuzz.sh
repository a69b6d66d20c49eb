#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for a bounded time with libFuzzer
# (`cargo fuzz`), from the committed corpus. A crash fails the run and
# leaves its input in fuzz/artifacts/TARGET/: fix it, then move the input to
# fuzz/regressions/TARGET/ so `tests/tests/e2e/fuzz_regressions.rs` keeps it.
#
#   scripts/fuzz.sh                 # 60 s per target, the release profile
#   SECONDS_PER_TARGET=300 scripts/fuzz.sh onnx_tract
#   FUZZ_PROFILE=dev scripts/fuzz.sh  # what CI runs: builds in half the time
#   FUZZ_JOBS=1 scripts/fuzz.sh       # one target at a time (default: one per core)
#
# Stable Rust works: without a sanitizer (`-s none`) cargo fuzz needs no
# nightly flag. New inputs the fuzzer keeps land in fuzz/corpus/; minimize
# before committing them (`cargo fuzz cmin -s none TARGET`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SECONDS_PER_TARGET:-60}
profile=()
[ "${FUZZ_PROFILE:-release}" = dev ] && profile=(--dev)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

targets=("$@")
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -s none "${profile[@]}"

# One target, its corpus copied aside: a bounded run must not grow the
# committed one. Prints its summary when done; fails on a crash.
fuzz_one() {
  local target=$1 scratch log
  scratch=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$scratch/"
  log="$scratch.log"
  if ! cargo fuzz run -s none "${profile[@]}" "$target" "$scratch" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/" >&2
    return 1
  fi
  echo "fuzzed $target for ${seconds} s: $(grep -E '^Done' "$log" || echo 'no summary')"
  grep -E '^stat::peak_rss_mb' "$log" | sed "s/^/  $target /" || true
  rm -rf "$scratch" "$log"
}

# A target per core at once (each libFuzzer run is one process on one
# core): the whole run takes a minute per core's share of the targets.
jobs_max=${FUZZ_JOBS:-$(nproc)}
failed=0
running=0
for target in "${targets[@]}"; do
  # `wait -n` reaps one job each call, finished before it or not.
  if [ "$running" -ge "$jobs_max" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  echo "fuzzing $target for ${seconds} s"
  fuzz_one "$target" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"
