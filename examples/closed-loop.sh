#!/usr/bin/env bash
# The closed loop on the embedded default, in about a minute and a half:
# serve, send traffic like the training data, then drifted traffic with its
# ground truth; watch the drift, the training trigger, the retrain (the
# trigger's command: models/retrain.py), the new version's canary, its
# entry into production through the policy's approval, and its promotion.
#
#   python3 -m pip install -r models/requirements.txt   # the retrain needs scikit-learn
#   bash examples/closed-loop.sh
#
# It runs the binary SLUICE names; else, where cargo is, this tree's
# release build; else `sluice` on the PATH (the image's,
# /usr/local/bin/sluice) or an earlier target/release/sluice.
#
# Windows are shortened so the story fits in minutes: statistics every
# 0.5 s, drift judged on 10-second windows (two drifted in a row fire), a
# canary step every 5 s. Production would use minutes to hours.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n[%3ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }
# The value at a dotted path of the JSON on stdin (empty when absent).
field() { python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else json.dumps(value))' "$1" 2>/dev/null || true; }

python3 -c "import sklearn, skl2onnx, onnx" 2>/dev/null || {
    echo "the retrain needs: python3 -m pip install -r models/requirements.txt" >&2; exit 1; }
if [ -z "${SLUICE:-}" ]; then
    if command -v cargo >/dev/null; then
        # A checkout with cargo: build, so the binary is this tree's, not a stale one.
        cargo build --release -q -p sluice --bin sluice
        SLUICE=target/release/sluice
    elif command -v sluice >/dev/null; then
        SLUICE=$(command -v sluice)
    elif [ -x target/release/sluice ]; then
        SLUICE=target/release/sluice
    else
        echo "no sluice binary: set SLUICE=/path/to/sluice, put sluice on the PATH, or install cargo" >&2
        exit 1
    fi
fi
echo "running $SLUICE" >&2
# ONNX Runtime: the one the environment names (the image sets
# SLUICE_ORT_LIBRARY), else the pinned release, downloaded once into the cache.
if [ -z "${SLUICE_ORT_LIBRARY:-}" ]; then
    ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}
    export ORT_DYLIB_PATH
fi

started=$(date +%s)   # the clock of the story starts after the build
DATA=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port)
GATEWAY=http://127.0.0.1:$PORT
export SLUICE_REGISTRY_URL=http://127.0.0.1:$ADMIN SLUICE_DATA_DIR=$DATA
# The operator's word on what a trigger may run: the retrain, with the
# token it registers with; a policy may only ask for --approve and a row count.
cat >"$DATA/actions.toml" <<TOML
[commands.retrain]
program = "python3"
args = ["$PWD/models/retrain.py"]
env = { SLUICE_TOKEN_FILE = "$DATA/admin.token", SLUICE_DATA_DIR = "$DATA" }
[commands.retrain.params]
approve = { flag = "--approve", type = "switch" }
min_rows = { flag = "--min-rows", type = "integer", min = 1, max = 100000 }
TOML
# Production needs one technical approval here, and the requester may give
# it: one person runs this story. (The default asks two other people.)
cat >"$DATA/policy.toml" <<TOML
[stages.staging]
approvals = ["technical"]
requester_may_approve = true
[stages.production]
approvals = ["technical"]
requester_may_approve = true
TOML
"$SLUICE" serve --demo --data-dir "$DATA" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
    --actions-file "$DATA/actions.toml" --policy-file "$DATA/policy.toml" \
    --stats-interval-ms 500 --segment-max-age-ms 1000 --monitor-tick-ms 500 --feedback-bucket-ms 5000 \
    --log warn >"$DATA/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; echo "data and logs: $DATA"' EXIT
until curl -sf "$GATEWAY/v2/models/credit_risk/ready" >/dev/null; do sleep 0.2; done
say "serving credit_risk version 1 on $GATEWAY (registry $SLUICE_REGISTRY_URL, data $DATA)"

"$SLUICE" traffic set credit_risk 1=100 --log-sample-rate 1.0 --reason "log every prediction with its inputs"
cat >"$DATA/policy.json" <<JSON
{"rules": [{"kind": "drift", "window_ms": 10000, "windows": 2}],
 "action": {"command": {"name": "retrain", "params": {"approve": true, "min_rows": 300}}},
 "cooldown_ms": 600000,
 "rollout": {"step_weights": [25, 50], "interval_ms": 5000, "min_requests": 20, "max_error_rate": 0.05}}
JSON
"$SLUICE" triggers set credit_risk "$DATA/policy.json"

say "10 s of applicants like the training data"
python3 examples/traffic.py --gateway "$GATEWAY" --seconds 10
"$SLUICE" drift show credit_risk --window-secs 10

say "the applicants change: older, richer, larger loans, newer jobs (and their outcomes come back)"
python3 examples/traffic.py --gateway "$GATEWAY" --seconds 100 --drift >"$DATA/traffic.log" 2>&1 &
traffic=$!
shown_drift=""; shown_run=""; shown_rollout=""
while kill -0 $traffic 2>/dev/null; do
    sleep 1
    if [ -z "$shown_drift" ] && [ "$("$SLUICE" drift show credit_risk --window-secs 10 --json | field dataset_drift)" = true ]; then
        say "dataset drift over the last 10 s:"; "$SLUICE" drift show credit_risk --window-secs 10; shown_drift=1
    fi
    run=$("$SLUICE" triggers history credit_risk --limit 1 | tail -n +2)
    if [ -n "$run" ] && [ "$run" != "$shown_run" ]; then
        say "training trigger:"; "$SLUICE" triggers history credit_risk --limit 1; shown_run=$run
    fi
    rollout=$("$SLUICE" rollout status credit_risk 2>/dev/null | head -n 3 || true)
    if [ -n "$rollout" ] && [ "$rollout" != "$shown_rollout" ]; then
        say "canary:"; echo "$rollout"; shown_rollout=$rollout
    fi
    # A rollout moves no stage: its canary waits at its last step, its
    # production transition opened, until the policy's approvals let it in.
    if [ "$("$SLUICE" rollout status credit_risk --json 2>/dev/null | field status)" = '"awaiting_promotion"' ]; then
        id=$("$SLUICE" stage list --model credit_risk --pending --json | python3 -c 'import json, sys
pending = [t for t in json.load(sys.stdin) if t["to_stage"] == "production"]
print(pending[0]["id"] if pending else "")')
        if [ -n "$id" ]; then
            say "the canary passed every step; the rollout opened transition $id, approved here:"
            "$SLUICE" stage approve "$id" --comment "canary and drift look right"
        fi
    fi
    if [ "$("$SLUICE" rollout status credit_risk --json 2>/dev/null | field status)" = '"promoted"' ]; then
        sleep 6
        say "version 2 takes the traffic, and against its own training data nothing drifts:"
        "$SLUICE" drift show credit_risk --window-secs 5
        kill $traffic 2>/dev/null || true
        break
    fi
done
wait $traffic 2>/dev/null || true

say "where it ended"
"$SLUICE" traffic show credit_risk
"$SLUICE" versions show credit_risk 2 | grep -E "stage|parent|trigger|metrics|dataset" || true
"$SLUICE" triggers show "$("$SLUICE" triggers history credit_risk --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" | head -n 12
"$SLUICE" events --limit 200 | grep -E "trigger\.|rollout\.|version.create" || true
if [ "$("$SLUICE" rollout status credit_risk --json | field status)" = '"promoted"' ]; then
    say "closed loop done"
else
    say "the loop did not finish: see $DATA"; exit 1
fi
