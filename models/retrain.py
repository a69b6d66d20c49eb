#!/usr/bin/env python3
"""Retrain the credit-risk model and register the new version: the training
trigger's `command` in the closed loop (see examples/closed-loop.sh).

Run by the registry, it finds the trigger run in its environment
(`SLUICE_TRIGGER_CONTEXT`, `SLUICE_REGISTRY_URL`, ...); by hand, give the
same with flags. What it does:

1. Gathers labelled rows: the logged predictions that carry their inputs
   (the deployment's `log_sample_rate`), made since the trigger's last judged
   window began, joined on `request_id` with the ground-truth feedback, both read
   from the JSON Lines the gateways write, with no Sluice code; or a CSV
   given with `--data` (features + `default`).
2. Trains the same pipeline as `models/train.py` (standard scaler folded into
   a logistic regression, so both engines run it), exports ONNX, and builds
   the reference profile of the rows it learned from and of its answers on
   them (`models/cards.py`).
3. Registers it through the registry's HTTP API: uploads the artifact,
   creates the version with its lineage (parent version, trigger id, metrics,
   dataset), stores the profile, and asks for `staging` (approving it too
   when its token may). Registering with `lineage.trigger_id` completes the
   trigger run; a policy with `rollout` then starts the canary.

`--artifact FILE --profile FILE` skips steps 1-2 and registers a prebuilt
model (the tests do, to run without scikit-learn).

Training needs `pip install -r models/requirements.txt`; registering needs
only the standard library.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import sys
import tempfile
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"retrain: {message}", file=sys.stderr, flush=True)


class Registry:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> dict:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise SystemExit(f"retrain: {method} {path} answered {err.code}: {detail}") from None
        return json.loads(text) if text else {}


def read_jsonl(directory: pathlib.Path, model: str) -> list[dict]:
    """Every record under `directory/model=M/...`, as DuckDB or pandas would read them."""
    records = []
    for path in sorted((directory / f"model={model}").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def millis(stamp: str) -> int:
    return int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def labelled_rows(data_dir: pathlib.Path, model: str, features: list[str],
                  since_ms: int) -> tuple[list[list[float]], list[int]]:
    """Logged inputs joined with feedback on request_id, one row per request
    row, for predictions made since `since_ms`."""
    labels = {}
    for record in read_jsonl(data_dir / "feedback", model):
        labels[record["request_id"]] = record["label"]
    rows, targets = [], []
    for record in read_jsonl(data_dir / "predictions", model):
        inputs = record.get("inputs")
        label = labels.get(record["request_id"])
        if inputs is None or label is None or millis(record["time"]) < since_ms:
            continue
        columns = [inputs[name] for name in features]
        per_row = label if isinstance(label, list) else [label]
        for index, truth in enumerate(per_row):
            values = [column[index] for column in columns]
            values = [value[0] if isinstance(value, list) else value for value in values]
            rows.append([float(value) for value in values])
            targets.append(int(truth))
    return rows, targets


def train(rows: list[list[float]], targets: list[int], out: pathlib.Path) -> tuple[pathlib.Path, dict, dict]:
    """Fits, exports ONNX and profiles; returns (model path, profile, metrics)."""
    import numpy as np
    import onnxruntime as ort
    from cards import numeric_profile, output_profiles
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from train import CREDIT_FEATURES, folded_credit_model

    x = np.asarray(rows, dtype=np.float32)
    y = np.asarray(targets, dtype=np.int64)
    train_x, valid_x, train_y, valid_y = train_test_split(x, y, test_size=0.25, random_state=7, stratify=y)
    pipeline = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, max_iter=1000))])
    pipeline.fit(train_x, train_y)
    probabilities = pipeline.predict_proba(valid_x)[:, 1]
    metrics = {
        "val_auc": round(float(roc_auc_score(valid_y, probabilities)), 4),
        "val_accuracy": round(float(accuracy_score(valid_y, pipeline.predict(valid_x))), 4),
    }
    model = folded_credit_model(pipeline)
    path = out / "model.onnx"
    path.write_bytes(model.SerializeToString())
    features = {name: numeric_profile(x[:, index].astype(np.float64)) for index, name in enumerate(CREDIT_FEATURES)}
    # Its answers on the same rows, for prediction drift.
    session = ort.InferenceSession(str(path))
    names = [output.name for output in session.get_outputs()]
    answers = session.run(names, {name: x[:, [index]] for index, name in enumerate(CREDIT_FEATURES)})
    outputs = output_profiles(dict(zip(names, answers)))
    profile = {"schema": "sluice-profile/v1", "rows": int(len(x)), "features": features, "outputs": outputs}
    return path, profile, metrics


def main() -> None:
    context = {}
    if os.environ.get("SLUICE_TRIGGER_CONTEXT"):
        context = json.loads(pathlib.Path(os.environ["SLUICE_TRIGGER_CONTEXT"]).read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=context.get("registry_url") or os.environ.get("SLUICE_REGISTRY_URL"))
    parser.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"))
    parser.add_argument("--token-file", default=os.environ.get("SLUICE_TOKEN_FILE"))
    parser.add_argument("--model", default=context.get("model", "credit_risk"))
    parser.add_argument("--base-version", type=int, default=context.get("base_version"))
    parser.add_argument("--trigger-id", type=int, default=context.get("trigger_id"))
    parser.add_argument("--data-dir", default=os.environ.get("SLUICE_DATA_DIR", "./sluice-data"),
                        help="where the gateways write predictions/ and feedback/")
    parser.add_argument("--data", help="train on this CSV (features + default) instead of the logs")
    # The last window a drift or performance rule judged is all new data; an
    # earlier one may straddle the change.
    windows = context.get("evidence", {}).get("windows") or [context.get("window", {})]
    parser.add_argument("--since-ms", type=int, default=windows[-1].get("start_ms", 0),
                        help="learn from predictions made since then (default: the start of the "
                             "trigger's last judged window)")
    parser.add_argument("--min-rows", type=int, default=200)
    parser.add_argument("--artifact", help="register this ONNX file instead of training")
    parser.add_argument("--profile", help="with --artifact: its reference profile (JSON)")
    parser.add_argument("--approve", action="store_true", default=os.environ.get("SLUICE_RETRAIN_APPROVE") == "1",
                        help="approve the staging request too (a token that may review)")
    args = parser.parse_args()
    if not args.registry:
        parser.error("--registry (or SLUICE_REGISTRY_URL) is required")
    token = args.token or (pathlib.Path(args.token_file).read_text().strip() if args.token_file else None)
    registry = Registry(args.registry, token)

    with tempfile.TemporaryDirectory() as scratch:
        if args.artifact:
            path = pathlib.Path(args.artifact)
            profile = json.loads(pathlib.Path(args.profile).read_text()) if args.profile else None
            metrics, dataset = {}, None
        else:
            sys.path.insert(0, str(ROOT))
            from train import CREDIT_FEATURES

            if args.data:
                lines = pathlib.Path(args.data).read_text().splitlines()
                parsed = [[float(value) for value in line.split(",")] for line in lines[1:] if line]
                rows, targets = [row[:-1] for row in parsed], [int(row[-1]) for row in parsed]
                dataset = pathlib.Path(args.data).resolve().as_uri()
            else:
                rows, targets = labelled_rows(pathlib.Path(args.data_dir), args.model, CREDIT_FEATURES,
                                              args.since_ms)
                dataset = (pathlib.Path(args.data_dir).resolve() / "predictions").as_uri()
            log(f"{len(rows)} labelled rows")
            if len(rows) < args.min_rows or len(set(targets)) < 2:
                raise SystemExit(f"retrain: {len(rows)} labelled rows of {len(set(targets))} classes: "
                                 f"need {args.min_rows} of both classes")
            path, profile, metrics = train(rows, targets, pathlib.Path(scratch))
            log(f"trained: {metrics}")

        artifact_bytes = path.read_bytes()
        artifact = registry.call("POST", "/api/v1/artifacts", raw=artifact_bytes)
        lineage = {"metrics": metrics, "parameters": {"C": "1.0"}, "environment": {"python": sys.version.split()[0]}}
        if args.base_version:
            lineage["parent_version"] = args.base_version
        if args.trigger_id:
            lineage["trigger_id"] = args.trigger_id
            lineage["training_run_id"] = f"trigger-{args.trigger_id}"
        if dataset:
            lineage["dataset"] = {"uri": dataset, "sha256": hashlib.sha256(repr(rows).encode()).hexdigest()}
        version = registry.call("POST", f"/api/v1/models/{args.model}/versions",
                                {"artifact": {"sha256": artifact["sha256"]}, "lineage": lineage})
        number = version["version"]
        log(f"registered version {number} of {args.model}")
        if profile:
            registry.call("PUT", f"/api/v1/models/{args.model}/versions/{number}/documents/reference_profile", profile)
        transition = registry.call("POST", f"/api/v1/models/{args.model}/versions/{number}/transitions",
                                   {"to_stage": "staging", "comment": f"retrained by trigger {args.trigger_id}"})
        if args.approve:
            registry.call("POST", f"/api/v1/transitions/{transition['id']}/approve",
                          {"approval": "technical", "comment": "retrained on labelled traffic"})
            log(f"version {number} approved for staging")
    print(json.dumps({"model": args.model, "version": number}))


if __name__ == "__main__":
    main()
