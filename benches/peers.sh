#!/usr/bin/env bash
# Side by side, in one run on one machine: Sluice against the engine alone
# (ONNX Runtime from Rust and from Python, nothing around it), the Python
# servers teams run (a careful FastAPI + uvicorn + onnxruntime server, KServe's
# ModelServer, Seldon's MLServer; benches/peers/), the floor (each model
# in-process with Sluice's codec) and the ceiling (a minimal hyper server
# answering a fixed body). Every server runs pinned to core 0, alone, with one
# engine thread; the load generator (sluice-loadtest) runs on core 1. Prints
# one table row per server and model, then each target of the performance
# issue with its measured figure, and `sluice serve --demo`'s start-up.
#
#   bash benches/peers.sh [SECONDS] [CONNECTIONS]     # defaults: 10 s, 32
#
# Needs python3 with venv, curl and taskset; installs the peers' packages into
# three venvs under target/ on first use (about 2.5 minutes and 1.2 GB:
# KServe and MLServer pin packages the FastAPI baseline does not take).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH

cargo build --release -q -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest \
  -p sluice-benches --bin fixed_body --bin floor --bin engine_alone --bin copies --bin ort_options
source benches/lib.sh
fastapi_venv=$(venv peers-venv benches/peers/requirements.txt)
kserve_venv=$(venv peers-kserve-venv benches/peers/requirements-kserve.txt)
mlserver_venv=$(venv peers-mlserver-venv benches/peers/requirements-mlserver.txt)
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT
"$fastapi_venv/bin/python" benches/peers/models.py "$work"

# Peak resident memory of the running server, in MB.
rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server/status"; }

results="$work/results.txt"
# report LABEL MODEL LATENCY: one result line from the load generator's JSON
# (its standard input, read whole before the server's peak memory is).
report() {
  local answer rss
  answer=$(cat)
  rss=$(rss_mb)
  echo "$answer" | python3 -c '
import json, sys
report = json.load(sys.stdin)
total = report["total"]
latency = total["latency_ms"][sys.argv[3]]
failed = total["requests"] - total["ok"]
print(sys.argv[1], sys.argv[2], f"{report['"'"'achieved_rps'"'"']:.0f}", f"{latency['"'"'p50'"'"']:.3f}",
      f"{latency['"'"'p99'"'"']:.3f}", failed, sys.argv[4])
' "$1" "$2" "$3" "$rss" >> "$results"
}
# measure SERVER MODEL URL BODY [--binary]: one closed-model run, one result line.
measure() {
  local label="$1" model="$2" url="$3" body="$4"
  shift 4
  # A second of warm-up (connections, allocator, caches), not counted.
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$connections" --threads 1 --duration 1s --json >/dev/null
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$connections" --threads 1 --duration "${seconds}s" --json | report "$label" "$model" service
}
# at_80_percent SERVER MODEL URL BODY: an open-model run at 80% of the rate
# the closed run of SERVER and MODEL reached; latency corrected for
# coordinated omission.
at_80_percent() {
  local label="$1" model="$2" url="$3" body="$4" rate
  rate=$(awk -v s="$label" -v m="$model" '$1 == s && $2 == m { printf "%d", $3 * 0.8 }' "$results")
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" --rate "$rate" \
    --connections "$connections" --threads 1 --duration "${seconds}s" --json | report "$label@80%" "$model" corrected
}

echo "engine alone, one thread: ONNX Runtime through Rust's ort, then Python's onnxruntime"
taskset -c 0 target/release/engine_alone "$work" | tee "$work/alone-rust.txt"
taskset -c 0 "$fastapi_venv/bin/python" benches/peers/engine_alone.py "$work" | tee "$work/alone-python.txt"
echo
echo "floor: in-process, one thread, ONNX Runtime, Sluice's codec (no HTTP)"
taskset -c 0 target/release/floor "$work" | tee "$work/floor.txt"
echo
echo "memory: 100 versions of the MLP loaded through Sluice's engines, one process each"
for engine in ort tract; do
  target/release/copies "$work/repository/mlp/1/model.onnx" 100 "$engine" | tee -a "$work/copies.txt"
done
echo "ONNX Runtime's ways of holding a pool's weights (Sluice: shared-unpacked, one-session alone)"
for mode in defaults shared-packed shared-unpacked one-session; do
  taskset -c 0 target/release/ort_options "$work/repository/mlp/1/model.onnx" 784 "$mode"
done
echo

# Sluice: the model repository, ONNX Runtime, one compute thread and session.
port=$(free_port)
taskset -c 0 target/release/sluice serve --model-repository "$work/repository" \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --log error &
server=$!
base="http://127.0.0.1:$port"
wait_ready "$base"
"$fastapi_venv/bin/python" benches/peers/check_server.py "$base" "$work" >/dev/null
for model in mlp logreg30 cnn; do
  measure sluice "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
for model in mlp logreg30; do
  at_80_percent sluice "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
for model in mlp cnn; do
  measure sluice "${model}_batched" "$base/v2/models/${model}_batched/infer" "$work/requests/$model.json"
  measure sluice-binary "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json" --binary
  measure sluice-binary "${model}_batched" "$base/v2/models/${model}_batched/infer" "$work/requests/$model.json" --binary
done
stop_server

# The same with microsecond models run inline, on the thread that read the
# request (`--inline-below-us 20`), against the default (all on the pool).
port=$(free_port)
taskset -c 0 target/release/sluice serve --model-repository "$work/repository" \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --inline-below-us 20 --log error &
server=$!
base="http://127.0.0.1:$port"
wait_ready "$base"
for model in logreg30 mlp; do
  measure sluice-inline "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
stop_server

# peer LABEL: the three models against the server just started, once its
# answers are checked against ONNX Runtime's.
peer() {
  base="http://127.0.0.1:$port"
  wait_ready "$base"
  "$fastapi_venv/bin/python" benches/peers/check_server.py "$base" "$work" >/dev/null
  for model in mlp logreg30 cnn; do
    measure "$1" "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
  done
  stop_server
}
# The careful FastAPI baseline: orjson, numpy, uvloop and httptools, one worker.
port=$(free_port)
(cd benches/peers && MODEL_REPOSITORY="$work/repository" exec taskset -c 0 "../../$fastapi_venv/bin/uvicorn" \
  fastapi_server:app --host 127.0.0.1 --port "$port" --loop uvloop --http httptools \
  --log-level error --no-access-log) >"$work/fastapi.log" 2>&1 &
server=$!
peer fastapi
# KServe's ModelServer, one worker, gRPC off.
port=$(free_port)
(cd benches/peers && MODEL_REPOSITORY="$work/repository" HTTP_PORT="$port" \
  exec taskset -c 0 "../../$kserve_venv/bin/python" kserve_server.py) >"$work/kserve.log" 2>&1 &
server=$!
peer kserve
# Seldon's MLServer, inference inline in its one process.
port=$(free_port)
MLSERVER_VENV="$PWD/$mlserver_venv" MLSERVER_SETTINGS_DIR="$work/mlserver" \
  taskset -c 0 benches/peers/mlserver_start.sh "$work/repository" "$port" >"$work/mlserver.log" 2>&1 &
server=$!
peer mlserver

# The ceiling: HTTP alone.
port=$(free_port)
taskset -c 0 target/release/fixed_body "127.0.0.1:$port" >/dev/null &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
measure hyper-fixed logreg30 "http://127.0.0.1:$port/v2/models/logreg30/infer" "$work/requests/logreg30.json"
# The machine's own tail: the ceiling at the rate Sluice's 30-feature p99 was
# measured at (a fixed body answers in microseconds; what remains is the
# machine, the loopback and the load generator).
rate=$(awk '$1 == "sluice@80%" && $2 == "logreg30" { print $3 }' "$results")
taskset -c 1 target/release/sluice-loadtest "http://127.0.0.1:$port/v2/models/logreg30/infer" \
  --body "$work/requests/logreg30.json" --rate "$rate" --connections "$connections" --threads 1 \
  --duration "${seconds}s" --json | report "hyper-fixed@rate" logreg30 corrected
stop_server

# `sluice serve --demo`: the embedded registry, the example models registered and deployed.
port=$(free_port)
admin=$(free_port)
started=$(date +%s%N)
taskset -c 0 target/release/sluice serve --demo --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --data-dir "$work/demo" --log error &
server=$!
for _ in $(seq 1000); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.005; done
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
demo_url="http://127.0.0.1:$port/v2/models/credit_risk/infer"
taskset -c 1 target/release/sluice-loadtest "$demo_url" --body models/examples/credit_risk.json \
  --connections 8 --threads 1 --duration 3s --json >/dev/null
demo_rss=$(rss_mb)
stop_server

python3 benches/peers/targets.py "$work" "$ready_ms" "$demo_rss" "$connections"
