#!/usr/bin/env bash
# The test command: installs what the tests need from PyPI (the ONNX Runtime
# library; moto, an S3-compatible server for `--store s3://`; the corpus's
# Python side; the gRPC clients, in a virtual environment of their own) and
# from npm (playwright-core and axe-core, for the console's browser test), and
# runs the whole workspace's tests, ort tests included; then the public
# model corpus (tests/corpus/run.py); then schemathesis against both
# OpenAPI documents (tests/openapi/run.py); then the registry's suites
# again with the registry on PostgreSQL. The PostgreSQL tests start their
# own servers from Debian's postgresql package: without it they are skipped
# here, and CI, which sets SLUICE_REQUIRE_POSTGRES=1, fails instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
echo "ONNX Runtime: $ORT_DYLIB_PATH" >&2
# Without them (a Python that refuses pip installs) the S3 test says it is
# skipped and the corpus fails; CI requires the S3 test (SLUICE_REQUIRE_S3=1).
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt \
    || echo "could not install scripts/requirements-test.txt: the S3 test will be skipped" >&2
# tritonclient.grpc and KServe's client, for the gRPC suite: an environment
# of their own (their protobuf pin clashes with models/requirements.txt's),
# cached outside the clone and made again when the requirements change.
grpc_venv="${SLUICE_GRPC_VENV:-$HOME/.cache/sluice/grpc-venv}"
if ! cmp -s tests/grpc/requirements.txt "$grpc_venv/requirements.txt" 2>/dev/null; then
    rm -rf "$grpc_venv"
    if python3 -m venv "$grpc_venv" \
        && "$grpc_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/grpc/requirements.txt; then
        cp tests/grpc/requirements.txt "$grpc_venv/requirements.txt"
    else
        rm -rf "$grpc_venv"
        echo "could not install tests/grpc/requirements.txt: the gRPC clients' tests will be skipped" >&2
    fi
fi
export SLUICE_GRPC_PYTHON="$grpc_venv/bin/python"
# playwright-core and axe-core, for the console's browser test (it drives
# Debian's chromium): installed outside the clone by tests/console/install.sh,
# again only when tests/console/package-lock.json changes.
if command -v node >/dev/null && command -v npm >/dev/null \
    && console_modules="$(bash tests/console/install.sh)"; then
    export SLUICE_CONSOLE_NODE_MODULES="$console_modules"
else
    echo "could not install tests/console/package-lock.json (node and npm needed): the console's browser test will be skipped" >&2
fi
cargo test --workspace --all-targets "$@"
if [ $# -gt 0 ]; then
    exit 0
fi
# The public model corpus (tests/corpus/manifest.toml), downloaded once into
# ~/.cache/sluice/corpus, served by the binary the tests just built.
started=$SECONDS
python3 tests/corpus/run.py
echo "the corpus took $((SECONDS - started)) s" >&2
# Schemathesis against both OpenAPI documents, served by the binary the
# tests just built (tests/openapi/run.py); in a virtual environment of its
# own, cached outside the clone and made again when its pin changes.
schemathesis_venv="${SLUICE_SCHEMATHESIS_VENV:-$HOME/.cache/sluice/schemathesis-venv}"
if ! cmp -s tests/openapi/requirements.txt "$schemathesis_venv/requirements.txt" 2>/dev/null; then
    rm -rf "$schemathesis_venv"
    python3 -m venv "$schemathesis_venv"
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/openapi/requirements.txt
    cp tests/openapi/requirements.txt "$schemathesis_venv/requirements.txt"
fi
started=$SECONDS
python3 tests/openapi/run.py --schemathesis "$schemathesis_venv/bin/schemathesis"
echo "schemathesis took $((SECONDS - started)) s" >&2
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && [ -z "${SLUICE_TEST_PG_BIN:-}" ]; then
    if [ "${SLUICE_REQUIRE_POSTGRES:-}" = 1 ]; then
        echo "PostgreSQL's server is required (apt-get install postgresql)" >&2
        exit 1
    fi
    echo "SKIPPED the registry suites on PostgreSQL: apt-get install postgresql" >&2
    exit 0
fi
# Every suite of the end-to-end binary that starts a registry
# (TestRegistry), on PostgreSQL: its tests are those under `suite::`. A
# suite's modules live in a directory of its name.
mapfile -t suites < <(grep -l TestRegistry tests/tests/e2e/*.rs tests/tests/e2e/*/*.rs \
    | sed -E 's|^tests/tests/e2e/([^/.]+).*|\1|' | sort -u)
echo "The registry suites on PostgreSQL: ${suites[*]}" >&2
# `--workspace`, as above: the same features, so nothing is built again.
SLUICE_TEST_METADATA=postgres cargo test --workspace --test e2e -- $(printf -- '%s:: ' "${suites[@]}")
