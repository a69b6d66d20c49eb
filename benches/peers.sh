#!/usr/bin/env bash
# Side by side, in one run on one machine: Sluice against the FastAPI +
# uvicorn + onnxruntime server many teams write (benches/peers/), with the
# floor (each model in-process, no HTTP) and the ceiling (a minimal hyper
# server answering a fixed body). Every server runs pinned to core 0, alone,
# with one engine thread; the load generator (sluice-loadtest, closed model)
# runs on core 1. Prints one table row per server and model, then the ratios
# the hot-path issue sets targets for, and `sluice serve --demo`'s start-up.
#
#   bash benches/peers.sh [SECONDS] [CONNECTIONS]     # defaults: 10 s, 32
#
# Needs python3 with venv, curl and taskset; installs the baseline's packages
# into target/peers-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
connections="${2:-32}"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH

cargo build --release -q -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest \
  -p sluice-benches --bin fixed_body --bin floor
venv=target/peers-venv
if [ ! -x "$venv/bin/uvicorn" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r benches/peers/requirements.txt
fi
work="$(mktemp -d)"
server=""
stop_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap 'stop_server; rm -rf "$work"' EXIT
"$venv/bin/python" benches/peers/models.py "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 300); do curl -sf "$1/v2/health/ready" >/dev/null && return 0; sleep 0.1; done
  echo "server at $1 never became ready" >&2
  exit 1
}
# Peak resident memory of the running server, in MB.
rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server/status"; }

results="$work/results.txt"
# measure SERVER MODEL URL BODY [--binary]: one closed-model run, one result line.
measure() {
  local label="$1" model="$2" url="$3" body="$4"
  shift 4
  # A second of warm-up (connections, allocator, caches), not counted.
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$connections" --threads 1 --duration 1s --json >/dev/null
  taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" "$@" \
    --connections "$connections" --threads 1 --duration "${seconds}s" --json \
  | python3 -c '
import json, sys
report = json.load(sys.stdin)
total = report["total"]
latency = total["latency_ms"]["service"]
failed = total["requests"] - total["ok"]
print(sys.argv[1], sys.argv[2], f"{report['"'"'achieved_rps'"'"']:.0f}", f"{latency['"'"'p50'"'"']:.3f}",
      f"{latency['"'"'p99'"'"']:.3f}", failed, sys.argv[3])
' "$label" "$model" "$(rss_mb)" >> "$results"
}

echo "floor: in-process, one thread, ONNX Runtime (no HTTP)"
taskset -c 0 target/release/floor "$work"
echo

# Sluice: the model repository, ONNX Runtime, one compute thread and session.
port=$(free_port)
taskset -c 0 target/release/sluice serve --model-repository "$work/repository" \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --log error &
server=$!
base="http://127.0.0.1:$port"
wait_ready "$base"
for model in mlp logreg30 cnn; do
  measure sluice "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
for model in mlp cnn; do
  measure sluice "${model}_batched" "$base/v2/models/${model}_batched/infer" "$work/requests/$model.json"
  measure sluice-binary "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json" --binary
  measure sluice-binary "${model}_batched" "$base/v2/models/${model}_batched/infer" "$work/requests/$model.json" --binary
done
stop_server

# The same, every model on the compute pool (no inline runs): what inline saves.
port=$(free_port)
taskset -c 0 target/release/sluice serve --model-repository "$work/repository" \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --inline-below-us 0 --log error &
server=$!
base="http://127.0.0.1:$port"
wait_ready "$base"
for model in logreg30 mlp; do
  measure sluice-pool "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
stop_server

# The FastAPI baseline: same repository, uvicorn with uvloop and httptools.
port=$(free_port)
(cd benches/peers && MODEL_REPOSITORY="$work/repository" exec taskset -c 0 "../../$venv/bin/uvicorn" \
  fastapi_server:app --host 127.0.0.1 --port "$port" --log-level error --no-access-log) &
server=$!
base="http://127.0.0.1:$port"
wait_ready "$base"
for model in mlp logreg30 cnn; do
  measure fastapi "$model" "$base/v2/models/$model/infer" "$work/requests/$model.json"
done
stop_server

# The ceiling: HTTP alone.
port=$(free_port)
taskset -c 0 target/release/fixed_body "127.0.0.1:$port" >/dev/null &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
measure hyper-fixed logreg30 "http://127.0.0.1:$port/v2/models/logreg30/infer" "$work/requests/logreg30.json"
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

python3 - "$results" "$ready_ms" "$demo_rss" "$connections" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"{'server':<14} {'model':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'RSS MB':>7}")
for server, model, rps, p50, p99, failed, rss in rows:
    print(f"{server:<14} {model:<12} {rps:>8} {p50:>8} {p99:>8} {failed:>7} {rss:>7}")
by = {(server, model): (float(rps), float(p99)) for server, model, rps, p50, p99, failed, rss in rows}
def ratio(a, b):
    return by[a][0] / by[b][0]
print()
for served in ["mlp", "mlp_batched"]:
    print(f"MLP, JSON, batch 1 ({served}): sluice / fastapi throughput = {ratio(('sluice', served), ('fastapi', 'mlp')):.1f}x"
          f" (target 8x); p99 {by[('sluice', served)][1]:.2f} ms vs {by[('fastapi', 'mlp')][1]:.2f} ms")
print(f"30 features: sluice / hyper fixed body = {ratio(('sluice', 'logreg30'), ('hyper-fixed', 'logreg30')):.0%} (target 50%);"
      f" inline / pool = {ratio(('sluice', 'logreg30'), ('sluice-pool', 'logreg30')):.2f}x")
for model in ["cnn", "mlp"]:
    print(f"{model}, {sys.argv[4]} clients: batched / unbatched = "
          f"{ratio(('sluice-binary', model + '_batched'), ('sluice-binary', model)):.1f}x binary,"
          f" {ratio(('sluice', model + '_batched'), ('sluice', model)):.1f}x JSON (target for the CNN: 2x)")
print(f"sluice serve --demo: ready in {sys.argv[2]} ms, peak RSS {sys.argv[3]} MB after 3 s of load (targets 1 s, 60 MB)")
EOF
