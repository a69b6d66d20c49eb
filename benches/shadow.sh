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
cd "$(dirname "$0")/.."
source benches/serve.sh
register_versions 2

printf '%-12s %12s %10s %10s %8s\n' shadow 'req/s' 'p50 ms' 'p99 ms' failed
for rate in none 0 0.1 1; do
  if [ "$rate" = none ]; then
    $sluice traffic set credit_risk 1=100 >/dev/null
  else
    $sluice traffic set credit_risk 1=100 --shadow "2:$rate" >/dev/null
  fi
  sleep 1
  measure "$rate"
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^sluice_shadow_(requests|dropped)_total' || true
