#!/usr/bin/env bash
# The predict API's protocols side by side, in one run on one machine: the
# MLP (784-512-512-10) and the 30-feature logistic regression of
# benches/peers/models.py, each over HTTP/1.1 and h2c (JSON and binary
# tensors) and over gRPC (raw tensors, as tritonclient sends them), with
# each request on a connection of its own and with every request as a
# stream of one HTTP/2 connection; then KServe's Python gRPC server on the
# same models. Servers are pinned to core 0 with one engine thread (ONNX
# Runtime, one session); the load generator (sluice-loadtest, closed model)
# runs on core 1. Every server's gRPC answers are checked against ONNX
# Runtime's before it is measured.
#
#   bash benches/grpc.sh [SECONDS] [IN_FLIGHT]     # defaults: 10 s, 32
#
# Needs python3 with venv, curl and taskset; makes the venvs of
# benches/peers.sh (models, KServe) and of the gRPC clients under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
in_flight="${2:-32}"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
cargo build --release -q -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest
source benches/lib.sh
models_venv=$(venv peers-venv benches/peers/requirements.txt)
kserve_venv=$(venv peers-kserve-venv benches/peers/requirements-kserve.txt)
clients_venv=$(venv grpc-clients-venv tests/grpc/requirements.txt)
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT
"$models_venv/bin/python" benches/peers/models.py "$work" >/dev/null

results="$work/results.txt"
# run LABEL MODEL URL BODY [FLAGS...]: a second of warm-up, then one closed
# run of IN_FLIGHT requests at a time; one line: label, model, req/s, p50, p99 (ms), failed.
run() {
  local label="$1" model="$2" url="$3" body="$4"
  shift 4
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$in_flight" --threads 1 --duration 1s --json >/dev/null
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$in_flight" --threads 1 --duration "${seconds}s" --json | python3 -c '
import json, sys
report = json.load(sys.stdin)
total = report["total"]
latency = total["latency_ms"]["service"]
print(sys.argv[1], sys.argv[2], f"{report['"'"'achieved_rps'"'"']:.0f}", f"{latency['"'"'p50'"'"']:.3f}",
      f"{latency['"'"'p99'"'"']:.3f}", total["requests"] - total["ok"])
' "$label" "$model" | tee -a "$results"
}

# Sluice: HTTP/1.1, h2c and gRPC on its one port.
port=$(free_port)
taskset -c 0 target/release/sluice serve --model-repository "$work/repository" \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --log error &
server=$!
wait_ready "http://127.0.0.1:$port"
"$clients_venv/bin/python" benches/peers/check_grpc.py "127.0.0.1:$port" "$work" mlp logreg30
for model in mlp logreg30; do
  url="http://127.0.0.1:$port/v2/models/$model/infer"
  body="$work/requests/$model.json"
  run sluice-http1-json "$model" "$url" "$body"
  run sluice-http1-binary "$model" "$url" "$body" --binary
  run sluice-h2c-json "$model" "$url" "$body" --h2c
  run sluice-h2c-binary "$model" "$url" "$body" --h2c --binary
  run sluice-h2c-binary-1conn "$model" "$url" "$body" --h2c --binary --h2-connections 1
  run sluice-grpc "$model" "$url" "$body" --grpc
  run sluice-grpc-1conn "$model" "$url" "$body" --grpc --h2-connections 1
done
stop_server

# KServe's ModelServer with its gRPC server (REST on another port, unused).
port=$(free_port)
grpc_port=$(free_port)
(cd benches/peers && MODEL_REPOSITORY="$work/repository" HTTP_PORT="$port" GRPC_PORT="$grpc_port" \
  exec taskset -c 0 "../../$kserve_venv/bin/python" kserve_server.py) >"$work/kserve.log" 2>&1 &
server=$!
wait_ready "http://127.0.0.1:$port"
"$clients_venv/bin/python" benches/peers/check_grpc.py "127.0.0.1:$grpc_port" "$work" mlp logreg30
for model in mlp logreg30; do
  url="http://127.0.0.1:$grpc_port/v2/models/$model/infer"
  body="$work/requests/$model.json"
  run kserve-grpc "$model" "$url" "$body" --grpc
  run kserve-grpc-1conn "$model" "$url" "$body" --grpc --h2-connections 1
done
stop_server

echo
python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
rate = {(label, model): float(rps) for label, model, rps, *_ in rows}
print(f"{'server and protocol':28} {'model':9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}  vs HTTP/1.1 JSON")
for label, model, rps, p50, p99, failed in rows:
    base = rate.get(("sluice-http1-json", model))
    print(f"{label:28} {model:9} {float(rps):8.0f} {float(p50):8.3f} {float(p99):8.3f} {failed:>6}  {float(rps) / base:.2f}x")
for model in ["mlp", "logreg30"]:
    ours, theirs = rate.get(("sluice-grpc", model)), rate.get(("kserve-grpc", model))
    if ours and theirs:
        print(f"{model}: Sluice's gRPC is {ours / theirs:.1f}x KServe's Python gRPC server")
PY
