#!/usr/bin/env python3
"""Rollouts of good canaries on this machine, judged by the registry as in
production: how many are promoted.

    cargo build --release -p sluice --bin sluice -p sluice-loadtest --bin sluice-loadtest
    python3 -m pip install -r scripts/requirements-soak.txt   # scripts/soak.py's processes
    python3 benches/rollouts.py [--rollouts 20] [--rate 300]

One standalone registry and one gateway (scripts/soak.py starts them; the
gateway reports every second), credit_risk (a sub-millisecond model: tens of
microseconds in ONNX Runtime) and digits deployed. Rollout i pushes the very
model file already serving as a new version of credit_risk (even i) or
digits (odd i), a good canary by construction, and runs `sluice rollout
start` under the policy below while sluice-loadtest sends open-model load,
seeded with i, to both models (80% to credit_risk). Whatever the machine's
noise, every one should be promoted: a rollback is a false one.

The simulation (`cargo run --release -p sluice-benches --bin rollouts`)
measures the judgement's statistics over thousands of rollouts; this runs
the real processes, clocks and reports, a few at a time. Exit status 0
whatever the verdicts: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from soak import CREDIT_ONNX, DIGITS_ONNX, LOADS, ROOT, Soak  # noqa: E402

# Steps of 10, 25, 50%, six seconds each: six of the gateway's one-second
# reports an interval.
POLICY = """step_weights = [10, 25, 50]
interval_ms = 6000
min_requests = 20
max_error_rate = 0.05
max_nan_rate = 0.01
max_p99_ratio = 2.0
p99_floor_ms = 1.0
threshold = 2
"""
MODELS = [("credit_risk", CREDIT_ONNX), ("digits", DIGITS_ONNX)]
# A rollout takes three intervals; one still running after this is stuck.
ROLLOUT_TIMEOUT_S = 120


def load(soak: Soak, seed: int, seconds: float) -> list[subprocess.Popen]:
    """Open-model load to both models for `seconds`, seeded."""
    processes = []
    for model, share, connections, body in LOADS:
        command = soak.loadtest_command(model, share, connections, body, seconds, seed)
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=soak.env))
    return processes


def run_one(soak: Soak, index: int, policy: pathlib.Path) -> dict:
    model, onnx = MODELS[index % len(MODELS)]
    version = soak.push_staged(model, onnx, f"rollout benchmark {index}")
    loads = load(soak, index + 1, ROLLOUT_TIMEOUT_S)
    try:
        # The canary's first requests come after the gateway has loaded it:
        # let the load settle before the first interval begins.
        time.sleep(1)
        started = time.monotonic()
        soak.cli("rollout", "start", model, str(version), "--policy", str(policy))
        while True:
            rollout = soak.api("GET", f"/api/v1/rollouts/{model}")
            if rollout["status"] not in ("progressing", "paused"):
                break
            if time.monotonic() - started > ROLLOUT_TIMEOUT_S:
                soak.cli("rollout", "abort", model)
                rollout["status"] = "stuck"
                break
            time.sleep(0.2)
    finally:
        for process in loads:
            process.kill()
            process.wait()
    scores = {c["class"]: round(c["score"], 3) for c in rollout.get("evidence", {}).get("classes", [])}
    return {
        "rollout": index,
        "model": model,
        "canary": version,
        "status": rollout["status"],
        "seconds": round(time.monotonic() - started, 1),
        "verdicts": [interval["verdict"] for interval in rollout.get("intervals", [])],
        "p99_ms": [interval.get("p99_ms") for interval in rollout.get("intervals", [])],
        "stable_p99_ms": [interval.get("stable_p99_ms") for interval in rollout.get("intervals", [])],
        "highest_score": max(scores.values(), default=0.0),
        "scores": scores,
        "reasons": [r for interval in rollout.get("intervals", []) for r in interval.get("reasons", [])],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=300.0, help="requests a second, both models (default 300)")
    parser.add_argument("--out", help="output directory (default: a new one under /tmp)")
    parser.add_argument("--sluice", default=str(ROOT / "target/release/sluice"))
    parser.add_argument("--loadtest", default=str(ROOT / "target/release/sluice-loadtest"))
    args = parser.parse_args()
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="sluice-rollouts-"))
    soak_args = argparse.Namespace(
        out=str(out), minutes=1.0, rate=args.rate, interval_s=60.0, sluice=args.sluice,
        loadtest=args.loadtest, log_sample_rate=0.01, no_prediction_log=True,
    )
    soak = Soak(soak_args)
    soak.stats_interval_ms = 1000
    policy = out / "rollout.toml"
    results = []
    try:
        soak.setup()
        policy.write_text(POLICY)
        for index in range(args.rollouts):
            result = run_one(soak, index, policy)
            results.append(result)
            print(
                f"{index:2d} {result['model']:12s} v{result['canary']:<3d} {result['status']:12s}"
                f" {result['seconds']:5.1f} s  intervals {' '.join(result['verdicts'])}"
                f"  highest evidence {result['highest_score']:.2f}  {'; '.join(result['reasons'])[:160]}",
                flush=True,
            )
    finally:
        soak.cleanup()
        (out / "rollouts.json").write_text(json.dumps(results, indent=1))
    promoted = sum(r["status"] == "promoted" for r in results)
    for model, _ in MODELS:
        mine = [r for r in results if r["model"] == model]
        p99s = sorted(p for r in mine for p in r["p99_ms"] if p is not None)
        median = round(p99s[len(p99s) // 2], 3) if p99s else None
        print(f"{model}: {sum(r['status'] == 'promoted' for r in mine)} of {len(mine)} promoted;"
              f" canary p99 per interval, median {median} ms")
    print(f"promoted {promoted} of {len(results)}; results in {out}/rollouts.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
