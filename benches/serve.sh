# Sourced by shadow.sh and logging.sh: builds the release binaries, starts
# `sluice serve` (embedded registry) pinned to core 0 with one compute thread,
# registers N copies of the credit model in staging, and defines `measure
# LABEL`, one closed-model load test on core 1 printed as a table row.
# Expects $seconds and $connections; sets $sluice, $url and $port.
cargo build --release -q -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
data="$(mktemp -d)"
taskset -c 0 target/release/sluice serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --data-dir "$data" --compute-threads 1 --log error &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done

export SLUICE_REGISTRY_URL="http://127.0.0.1:$admin" SLUICE_DATA_DIR="$data"
sluice=target/release/sluice
url="http://127.0.0.1:$port/v2/models/credit_risk/infer"

# register_versions N: versions 1..N of credit_risk, each approved into staging.
register_versions() {
  $sluice models create credit_risk >/dev/null
  for version in $(seq "$1"); do
    $sluice versions push credit_risk models/repository/credit_risk/1/model.onnx >/dev/null
    id=$($sluice stage request credit_risk "$version" staging --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    $sluice stage approve "$id" >/dev/null
  done
}

# measure LABEL: one load test, printed as "LABEL req/s p50 p99 failed".
measure() {
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
' "$1"
}
