#!/usr/bin/env bash
# The shipped binary: `cargo build --release`, then its debug info moved
# aside. Prints the two paths.
#
#   dist/sluice        stripped of debug info and of its symbol table,
#                      with a .gnu_debuglink to the file below
#   dist/sluice.debug  the symbols and line tables, for gdb, `perf report`
#                      and addr2line: keep it beside the image or in a
#                      debuginfod store, keyed by the binary's build id
#
# Cargo's own split (`split-debuginfo = "packed"` with `strip`) leaves the
# line tables in the stripped binary's skeleton units, so they would be
# lost; objcopy keeps them. The symbol table goes too (12 MiB of mangled
# names): a panic still says its message and source line, and
# `RUST_BACKTRACE=1` frames resolve with addr2line against the .debug file.
# The Dockerfile runs this script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${1:-dist}"
cargo build --release --locked -p sluice --bin sluice >&2
mkdir -p "$out"
objcopy --only-keep-debug target/release/sluice "$out/sluice.debug"
objcopy --strip-all --add-gnu-debuglink="$out/sluice.debug" target/release/sluice "$out/sluice"
chmod 0644 "$out/sluice.debug"
ls -l "$out/sluice" "$out/sluice.debug" >&2
echo "$out/sluice"
echo "$out/sluice.debug"
