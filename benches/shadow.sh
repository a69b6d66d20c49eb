#!/usr/bin/env bash
# Throughput and p99 of the credit model with no shadow, then a shadow
# mirroring 0%, 10% and 100% of requests, in one run: `sluice serve` (embedded
# registry) pinned to core 0 with one compute thread, sluice-loadtest (closed
# model) on core 1. The shadow is another loaded copy of the model, so 100%
# doubles the model work; it runs on its own thread, behind a queue that
# drops when full.
#
#   bash benches/shadow.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
seconds="${1:-10}"
connections="${2:-16}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q -p sluice-gateway --bin sluice -p sluice-loadtest --bin sluice-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
data="$(mktemp -d)"
taskset -c 0 target/release/sluice serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --data-dir "$data" --compute-threads 1 --log error &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done

export SLUICE_REGISTRY_URL="http://127.0.0.1:$admin" SLUICE_DATA_DIR="$data"
sluice=target/release/sluice
$sluice models create credit_risk >/dev/null
for version in 1 2; do
  $sluice versions push models/repository/credit_risk/1/model.onnx --model credit_risk >/dev/null
  id=$($sluice stage request credit_risk "$version" staging --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  $sluice stage approve "$id" >/dev/null
done

url="http://127.0.0.1:$port/v2/models/credit_risk/infer"
printf '%-12s %12s %10s %10s %8s\n' shadow 'req/s' 'p50 ms' 'p99 ms' failed
for rate in none 0 0.1 1; do
  if [ "$rate" = none ]; then
    $sluice traffic set credit_risk 1=100 >/dev/null
  else
    $sluice traffic set credit_risk 1=100 --shadow "2:$rate" >/dev/null
  fi
  sleep 1
  taskset -c 1 target/release/sluice-loadtest "$url" --body models/examples/credit_risk.json \
    --connections "$connections" --threads 1 --duration "${seconds}s" --json \
  | python3 -c '
import json, sys
report = json.load(sys.stdin)
total = report["total"]
latency = total["latency_ms"]["service"]
rps, p50, p99 = report["achieved_rps"], latency["p50"], latency["p99"]
failed = total["requests"] - total["ok"]
print(f"{sys.argv[1]:<12} {rps:>12.0f} {p50:>10.3f} {p99:>10.3f} {failed:>8}")
' "$rate"
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^sluice_shadow_(requests|dropped)_total' || true
