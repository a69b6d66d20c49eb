#!/usr/bin/env python3
"""Loan applications for the closed-loop example, with the truth sent back later.

Each request is one applicant from the training data (shifted with
`--drift`: 25 years older, 60% more income and larger loans, shorter
employment: half the features move), sent to
`POST /v2/models/credit_risk/infer` under its own `x-request-id`. Its true
outcome is drawn from the same logistic story `models/train.py` trained on,
and posted to `POST /v2/models/credit_risk/feedback` in batches, as a lender
would once loans mature. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import threading
import time
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_payments_90d",
            "utilization", "months_employed", "loan_amount"]


def default_probability(row: dict) -> float:
    logit = (-1.2 - 0.02 * (row["age"] - 45) - 0.9 * (math.log(row["income"]) - 10.8)
             + 3.0 * (row["debt_ratio"] - 0.3) + 0.9 * row["late_payments_90d"]
             + 2.0 * (row["utilization"] - 0.4) - 0.004 * row["months_employed"]
             + 1.5 * (row["loan_amount"] / row["income"] - 0.45))
    return 1.0 / (1.0 + math.exp(-logit))


def post(url: str, body: object, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def worker(args, rows, stop_at, counts, lock) -> None:
    rng = random.Random()
    labels = []
    while time.time() < stop_at:
        row = dict(rng.choice(rows))
        if args.drift:
            row["age"] += 25
            row["income"] *= 1.6
            row["loan_amount"] *= 1.6
            row["months_employed"] *= 0.4
        request_id = f"loan-{uuid.uuid4().hex[:12]}"
        body = {"inputs": [{"name": name, "datatype": "FP32", "shape": [1, 1], "data": [row[name]]}
                           for name in FEATURES]}
        post(f"{args.gateway}/v2/models/credit_risk/infer", body, {"x-request-id": request_id})
        labels.append({"request_id": request_id, "label": int(rng.random() < default_probability(row))})
        if len(labels) >= 50:
            post(f"{args.gateway}/v2/models/credit_risk/feedback", labels)
            with lock:
                counts["labels"] += len(labels)
            labels = []
        with lock:
            counts["requests"] += 1
    if labels:
        post(f"{args.gateway}/v2/models/credit_risk/feedback", labels)
        with lock:
            counts["labels"] += len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drift", action="store_true")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    lines = (ROOT / "models/data/credit_risk_train.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, map(float, line.split(",")))) for line in lines[1:] if line]
    counts, lock = {"requests": 0, "labels": 0}, threading.Lock()
    stop_at = time.time() + args.seconds
    threads = [threading.Thread(target=worker, args=(args, rows, stop_at, counts, lock))
               for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"traffic: {counts['requests']} requests, {counts['labels']} labels"
          f"{' (drifted)' if args.drift else ''} in {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
