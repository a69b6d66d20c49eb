#!/usr/bin/env bash
# The test command: installs what the tests need (the ONNX Runtime library,
# from PyPI) and runs the whole workspace's tests, ort tests included.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
echo "ONNX Runtime: $ORT_DYLIB_PATH" >&2
cargo test --workspace --all-targets "$@"
