#!/usr/bin/env bash
# The generator's own ceiling: wrk and sluice-loadtest, in the same run,
# against the same minimal server (examples/fixed_server.rs), server and
# generator pinned to different cores. Prints both rates and their ratio.
#
#   bash loadtest/bench/ceiling.sh [SECONDS] [CONNECTIONS]
#
# Needs wrk (Debian: apt-get install wrk) and taskset (util-linux).
set -euo pipefail
seconds="${1:-10}"
connections="${2:-64}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --release -q -p sluice-loadtest --bin sluice-loadtest --example fixed_server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 target/release/examples/fixed_server "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/v2/models/fixed/infer"
body="$(mktemp)"
script="$(mktemp --suffix=.lua)"
echo '{"inputs":[]}' > "$body"
printf 'wrk.method = "POST"\nwrk.body = [[{"inputs":[]}]]\n' > "$script"

wrk_rps=$(taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s "$script" "$url" \
  | awk '/Requests\/sec/ {print $2}')
ours_rps=$(taskset -c 1 target/release/sluice-loadtest "$url" --body "$body" --connections "$connections" \
  --threads 1 --duration "${seconds}s" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["achieved_rps"], 1))')
python3 - "$wrk_rps" "$ours_rps" "$connections" "$seconds" <<'PY'
import sys
wrk, ours, connections, seconds = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"minimal server on core 0, generators on core 1, {connections} connections, {seconds} s each")
print(f"wrk -t1:                    {wrk:>10.1f} req/s")
print(f"sluice-loadtest --threads 1: {ours:>10.1f} req/s")
print(f"ratio:                      {ours / wrk:>10.2f}")
PY
