#!/usr/bin/env python3
"""Send the first N applicants of the credit training data to a gateway,
each under its own `x-request-id`, then their true outcomes as feedback:
what docs/quality.md ("Quality gates") runs before `sluice quality show`.

    python3 scripts/label-applicants.py [N] [GATEWAY_URL]

N defaults to 1500, the gateway to http://127.0.0.1:8080. The deployment
must log predictions (`sluice traffic set credit_risk 1=100
--log-sample-rate 0.1`); the registry joins the labels once the gateway has
written its prediction log segment (a minute by default).
"""

from __future__ import annotations

import csv
import json
import pathlib
import sys
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def post(url: str, body: object, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request) as response:
        return response.read()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    gateway = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
    with open(ROOT / "models/data/credit_risk_train.csv") as file:
        rows = list(csv.DictReader(file))[:count]
    features = [name for name in rows[0] if name != "default"]
    labels = []
    for index, row in enumerate(rows):
        inputs = [
            {"name": name, "datatype": "FP32", "shape": [1, 1], "data": [float(row[name])]} for name in features
        ]
        request_id = f"loan-{index}"
        post(f"{gateway}/v2/models/credit_risk/infer", {"inputs": inputs}, {"x-request-id": request_id})
        labels.append({"request_id": request_id, "label": int(row["default"])})
    answer = json.loads(post(f"{gateway}/v2/models/credit_risk/feedback", labels))
    print(f"predicted and labelled {answer['accepted']} applicants")


if __name__ == "__main__":
    main()
