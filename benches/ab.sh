#!/usr/bin/env bash
# Two sluice binaries side by side on one workload: each serves the example
# repository pinned to core 0 with one compute thread, `wrk -t1 -c32` on
# core 1 posts a model's example request (3 s warm-up, then 10 s), the two
# alternating for ROUNDS rounds; prints each run and the medians.
#
#   bash benches/ab.sh BEFORE_BINARY AFTER_BINARY [MODEL] [ROUNDS]
#   bash benches/ab.sh /tmp/sluice-1b69dc5 target/release/sluice credit_risk 6
#
# Build the older one from a worktree (`git worktree add /tmp/old REV`,
# `cargo build --release -p sluice` there) and copy its binary
# aside. Needs wrk (Debian's package) and taskset.
set -euo pipefail
before=$1 after=$2 model=${3:-credit_risk} rounds=${4:-6}
root="$(cd "$(dirname "$0")/.." && pwd)"
body="$root/models/examples/$model.json"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<LUA
local f = io.open("$body", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
one() {
    local binary=$1 port pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    taskset -c 0 "$binary" serve --model-repository "$root/models/repository" --listen "127.0.0.1:$port" \
        --compute-threads 1 --log warn >/dev/null 2>&1 &
    pid=$!
    until curl -sf "localhost:$port/v2/models/$model/ready" >/dev/null; do sleep 0.1; done
    taskset -c 1 wrk -t1 -c32 -d3s -s "$script" "http://127.0.0.1:$port/v2/models/$model/infer" >/dev/null
    taskset -c 1 wrk -t1 -c32 -d10s -s "$script" "http://127.0.0.1:$port/v2/models/$model/infer" |
        awk '/Requests\/sec/ {print $2}'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
for _ in $(seq "$rounds"); do
    echo "before $(one "$before")"
    echo "after $(one "$after")"
done | tee /dev/stderr | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    name, rps = line.split()
    runs.setdefault(name, []).append(float(rps))
for name, values in runs.items():
    print(f"{name}: median {statistics.median(values):,.0f} req/s over {len(values)} runs")'
