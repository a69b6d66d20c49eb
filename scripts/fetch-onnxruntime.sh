#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library out of the `onnxruntime` wheel on PyPI
# into .ort/ and prints its path. Idempotent: an existing copy is kept.
#
#   export ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
#
# ort 2.0.0-rc.15 needs ONNX Runtime 1.31 or newer; the version is pinned so
# that outputs match the committed reference fixtures.
set -euo pipefail
version="${SLUICE_ORT_VERSION:-1.32.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.ort"
lib="$dest/libonnxruntime.so.$version"
if [ ! -f "$lib" ]; then
  mkdir -p "$dest"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$scratch" "onnxruntime==$version" >&2
  python3 - "$scratch" "$lib" "$version" <<'PY'
import glob, shutil, sys, zipfile
scratch, target, version = sys.argv[1:]
wheel = glob.glob(f"{scratch}/onnxruntime-*.whl")[0]
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target + ".partial", "wb") as out:
    shutil.copyfileobj(source, out)
shutil.move(target + ".partial", target)
PY
fi
echo "$lib"
