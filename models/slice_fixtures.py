#!/usr/bin/env python3
"""Write `models/fixtures/slices.json`: per-slice realized performance computed with scikit-learn.

Run from the repository root after `models/train.py`:

    python3 models/slice_fixtures.py

The fixture is a prediction log and a feedback log of the credit model, as
the gateway writes them, and the per-slice metrics that joining the two must
give (the credit card's slice: age bands at 30, 45 and 60). What it holds:

- predictions: rows of the training data drawn with a fixed seed, run through
  version 1 with ONNX Runtime, one to three rows per logged request; each
  line's `slice` names the age band of each of its rows. Probabilities are
  written as the exact f32 values (as f64 numbers), so the Rust side reads
  the very numbers scored here. Times are placeholders in 2026-01-01; the
  test replaces them;
- feedback: one line per request with the true label of each row, the
  training data's `default`, except that 15% of the labels of the
  "age >= 60" slice (chosen with the seed) are flipped, so that its error
  rates stand apart. Only 10 rows of "age < 30" are kept (7 negatives, 3
  positives), fewer than `min_rows`: that slice is listed with its metrics
  but left out of the gaps;
- expected: per slice (ordered by name) the joined rows, accuracy (predicted
  `label` equal to the true one), false positive rate FP/(FP+TN) and false
  negative rate FN/(FN+TP) with class 1 positive (null on a zero
  denominator), and AUC of the probability of default binned into
  hundredths, bin = min(floor(p * 100), 99), with
  `sklearn.metrics.roc_auc_score` on the bins (ties count half, as a
  histogram AUC does; null when the slice has one class). The gaps are the
  max - min of each metric over the slices with at least `min_rows` rows and
  a value.
"""

from __future__ import annotations

import datetime
import json
import pathlib

import numpy as np
import onnxruntime as ort
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

ROOT = pathlib.Path(__file__).resolve().parent
SEED = 20261126
SAMPLE = 720
MIN_ROWS = 20
EDGES = [30, 45, 60]
SMALL_SLICE, SMALL_NEGATIVES, SMALL_POSITIVES = "age < 30", 7, 3
FLIPPED_SLICE, FLIP_SHARE = "age >= 60", 0.15
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
METRICS = ["accuracy", "auc", "false_positive_rate", "false_negative_rate"]


def load_csv() -> tuple[list[str], np.ndarray]:
    path = ROOT / "data/credit_risk_train.csv"
    header = path.read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)


def slice_of(age: float) -> str:
    if age < EDGES[0]:
        return f"age < {EDGES[0]}"
    if age < EDGES[1]:
        return f"{EDGES[0]} <= age < {EDGES[1]}"
    if age < EDGES[2]:
        return f"{EDGES[1]} <= age < {EDGES[2]}"
    return f"age >= {EDGES[2]}"


def sample(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows used: a seeded sample, the small slice cut to a few rows of each class."""
    drawn = rng.choice(len(data), size=SAMPLE, replace=False)
    small = [i for i in drawn if slice_of(data[i, 0]) == SMALL_SLICE]
    negatives = [i for i in small if data[i, -1] == 0][:SMALL_NEGATIVES]
    positives = [i for i in small if data[i, -1] == 1][:SMALL_POSITIVES]
    assert len(negatives) == SMALL_NEGATIVES and len(positives) == SMALL_POSITIVES
    keep = set(negatives + positives)
    return np.array([i for i in drawn if slice_of(data[i, 0]) != SMALL_SLICE or i in keep])


def true_labels(labels: np.ndarray, slices: list[str], rng: np.random.Generator) -> np.ndarray:
    """The training labels, a share of those of one slice flipped."""
    labels = labels.copy()
    members = np.array([k for k, name in enumerate(slices) if name == FLIPPED_SLICE])
    flipped = rng.choice(members, size=round(FLIP_SHARE * len(members)), replace=False)
    labels[flipped] = 1 - labels[flipped]
    return labels


def timestamp(seconds: float) -> str:
    moment = START + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def logs(
    predicted: np.ndarray, probabilities: list[list[float]], labels: np.ndarray, slices: list[str], rng: np.random.Generator
) -> tuple[list[dict], list[dict]]:
    """Prediction and feedback lines of one to three rows each."""
    predictions, feedback = [], []
    row = 0
    while row < len(predicted):
        rows = range(row, min(row + int(rng.integers(1, 4)), len(predicted)))
        request = f"r-{len(predictions) + 1:04d}"
        predictions.append(
            {
                "time": timestamp(2 * len(predictions)),
                "request_id": request,
                "model": "credit_risk",
                "version": 1,
                "route": "primary",
                "latency_ms": 1.0,
                "replica": "fixture",
                "outputs": {
                    "label": [int(predicted[k]) for k in rows],
                    "probabilities": [probabilities[k] for k in rows],
                },
                "slice": [slices[k] for k in rows],
            }
        )
        feedback.append(
            {
                "time": timestamp(2 * len(feedback) + 1),
                "request_id": request,
                "model": "credit_risk",
                "label": [int(labels[k]) for k in rows],
            }
        )
        row = rows.stop
    return predictions, feedback


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def metrics(name: str, labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> dict:
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    bins = np.minimum(np.floor(scores * 100), 99).astype(np.int64)
    return {
        "slice": name,
        "rows": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "auc": float(roc_auc_score(labels, bins)) if len(set(labels.tolist())) == 2 else None,
        "false_positive_rate": ratio(int(fp), int(fp + tn)),
        "false_negative_rate": ratio(int(fn), int(fn + tp)),
    }


def gaps(slices: list[dict]) -> dict:
    counted = [entry for entry in slices if entry["rows"] >= MIN_ROWS]
    result = {}
    for metric in METRICS:
        values = [entry[metric] for entry in counted if entry[metric] is not None]
        result[metric] = max(values) - min(values) if len(values) >= 2 else None
    return result


def main() -> None:
    rng = np.random.default_rng(SEED)
    header, data = load_csv()
    rows = data[sample(data, rng)]
    session = ort.InferenceSession(str(ROOT / "repository/credit_risk/1/model.onnx"))
    feeds = {name: rows[:, [k]].astype(np.float32) for k, name in enumerate(header[:-1])}
    predicted, probabilities = session.run(["label", "probabilities"], feeds)
    # The exact f32 values, as the f64 numbers the log carries and Rust reads.
    written = [[float(value) for value in row] for row in probabilities]
    scores = np.array([row[1] for row in written], dtype=np.float64)
    slices = [slice_of(age) for age in rows[:, 0]]
    labels = true_labels(rows[:, -1].astype(np.int64), slices, rng)
    predictions, feedback = logs(predicted, written, labels, slices, rng)

    names = np.array(slices)
    per_slice = [
        metrics(name, labels[names == name], predicted[names == name], scores[names == name]) for name in sorted(set(slices))
    ]
    assert any(entry["rows"] < MIN_ROWS for entry in per_slice)
    assert sum(entry["rows"] >= MIN_ROWS for entry in per_slice) >= 3
    # Counting the small slice would change the gaps: the fixture tells the two apart.
    assert gaps(per_slice) != gaps([{**entry, "rows": max(entry["rows"], MIN_ROWS)} for entry in per_slice])
    fixture = {
        "description": (
            "Prediction and feedback logs of credit_risk version 1 on rows of its training data, with "
            "the per-slice accuracy, AUC (of the probability of default binned into hundredths), false "
            "positive and false negative rates that joining them gives, and the gaps between slices of "
            "at least min_rows rows. Labels of 15% of the 'age >= 60' rows are flipped; 'age < 30' is "
            "kept below min_rows. Written by models/slice_fixtures.py with scikit-learn."
        ),
        "model": "credit_risk",
        "version": 1,
        "slice": {"feature": "age", "edges": EDGES},
        "min_rows": MIN_ROWS,
        "predictions": predictions,
        "feedback": feedback,
        "expected": {"slices": per_slice, "gaps": gaps(per_slice)},
    }
    path = ROOT / "fixtures/slices.json"
    path.write_text(dumps(fixture))
    print(f"wrote {path.relative_to(ROOT.parent)} ({len(rows)} rows in {len(predictions)} requests)")
    for entry in per_slice:
        print(f"  {entry}")
    print(f"  gaps: {fixture['expected']['gaps']}")


def dumps(fixture: dict) -> str:
    """The fixture as indented JSON, except that each log line stays on one
    line, as in the JSON Lines segments it stands for."""
    logs = {key: fixture[key] for key in ("predictions", "feedback")}
    rest = {key: value for key, value in fixture.items() if key not in logs}
    text = json.dumps(rest, indent=2, sort_keys=True)
    parts = [
        f'  "{key}": [\n' + ",\n".join("    " + json.dumps(line, sort_keys=True) for line in lines) + "\n  ]"
        for key, lines in logs.items()
    ]
    return text[: text.rindex("}")].rstrip() + ",\n" + ",\n".join(parts) + "\n}\n"


if __name__ == "__main__":
    main()
