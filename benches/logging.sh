#!/usr/bin/env bash
# Throughput and p99 of the credit model with the prediction log off, then
# logging every prediction (request id and outputs) with 0%, 10% and 100% of
# them carrying their inputs, in one run: `sluice serve` (embedded registry)
# pinned to core 0 with one compute thread, so the log's writer thread shares
# that core; sluice-loadtest (closed model) on core 1. The log never waits:
# what its queue cannot take is dropped and counted (printed at the end).
#
#   bash benches/logging.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
seconds="${1:-10}"
connections="${2:-16}"
cd "$(dirname "$0")/.."
source benches/serve.sh
register_versions 1

# Warm up (connections, allocator, caches) before the first measured run.
$sluice traffic set credit_risk 1=100 >/dev/null
sleep 1
measure warm-up >/dev/null
printf '%-12s %12s %10s %10s %8s\n' inputs 'req/s' 'p50 ms' 'p99 ms' failed
# Off again last: the two "off" rows show how far the machine drifted meanwhile.
for rate in off 0 0.1 1 off; do
  if [ "$rate" = off ]; then
    $sluice traffic set credit_risk 1=100 >/dev/null
    label="log off"
  else
    $sluice traffic set credit_risk 1=100 --log-sample-rate "$rate" >/dev/null
    label="$(python3 -c "print(f'{float(\"$rate\"):.0%}')")"
  fi
  sleep 1
  measure "$label"
done
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
total() { echo "$metrics" | awk -v name="^$1" '$0 ~ name {s += $2} END {print s + 0}'; }
echo "logged: $(total sluice_prediction_log_records_total), dropped: $(total sluice_prediction_log_dropped_total)," \
  "segments: $(total sluice_prediction_log_segments_total)"
