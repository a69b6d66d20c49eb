#!/usr/bin/env bash
# Sizing: what one core of gateway serves for the example models, so that
# deploy/README.md can say how many cores 10,000 requests a second need.
# `sluice serve` runs pinned to core 0 with one compute thread (ONNX
# Runtime, one session, one intra-op thread); sluice-loadtest runs on core 1
# (closed model, 32 connections). One row per model and encoding, each the
# first row of models/fixtures/MODEL.json's request (batch 1).
#
#   bash benches/sizing.sh [SECONDS]     # default 10 s per row
#
# Needs taskset, curl and python3. The cores per 10k req/s are 10,000
# divided by the row's req/s: a floor that leaves no headroom (deploy with
# the HorizontalPodAutoscaler's 70% target on top).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
cargo build --release -q -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 target/release/sluice serve --model-repository models/repository \
  --listen "127.0.0.1:$port" --compute-threads 1 --ort-sessions 1 --log error &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 300); do curl -sf "$base/v2/health/ready" >/dev/null && break; sleep 0.1; done
echo "| model | encoding | req/s on one core | p50 ms | p99 ms | failed | cores per 10k req/s |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for model in credit_risk digits; do
  # The fixture's first row alone: a batch-1 request.
  python3 -c '
import json, math, sys
request = json.load(open(sys.argv[1]))["request"]
for tensor in request["inputs"]:
    row = math.prod(tensor["shape"][1:])
    tensor["shape"][0] = 1
    data = tensor["data"]
    # Flat, or nested one list per row.
    tensor["data"] = data[:1] if data and isinstance(data[0], list) else data[:row]
print(json.dumps(request))
' "models/fixtures/$model.json" > "$work/$model.json"
  for encoding in json binary; do
    flags=()
    [ "$encoding" = binary ] && flags=(--binary)
    url="$base/v2/models/$model/infer"
    taskset -c 1 target/release/sluice-loadtest "$url" --body "$work/$model.json" "${flags[@]}" \
      --connections 32 --threads 1 --duration 1s --json >/dev/null
    taskset -c 1 target/release/sluice-loadtest "$url" --body "$work/$model.json" "${flags[@]}" \
      --connections 32 --threads 1 --duration "${seconds}s" --json \
    | python3 -c '
import json, sys
report = json.load(sys.stdin)
total = report["total"]
latency = total["latency_ms"]["service"]
rps = report["achieved_rps"]
failed = total["requests"] - total["ok"]
p50, p99 = latency["p50"], latency["p99"]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {failed} | {10000 / rps:.2f} |")
' "$model" "$encoding"
  done
done
