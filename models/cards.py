#!/usr/bin/env python3
"""Write the model card (lineage) of each example model: `models/repository/{m}/1/card.json`.

Run from the repository root after `models/train.py`:

    python3 models/cards.py

It also writes each one's reference profile (`profile.json`): for every
feature of the training data, bin edges at its deciles (numpy's default
quantiles, repeated edges merged), the share of rows per bin
(`numpy.histogram`), count, mean and standard deviation; and for every
output of the committed model run on that data (prediction drift), the class
output's categories and each score column's bins. `sluice profile
create` builds the same from the same CSV (a test checks they agree), and
`sluice serve --demo` stores it with the version.

For the credit model it writes a data contract too (`contract.json`), as
`sluice contract derive --margin 0.1` derives one from the profile (each
feature's training range widened by a tenth of its width, never below zero
for a feature that never was), plus one cross-field rule the training data
keeps: a loan of at most twice the yearly income. The demo stores it, and
deployments may observe or enforce it.

The metrics are measured here, by running the committed ONNX file with ONNX
Runtime on the committed training data, so they are training-set figures and
named so (`train_auc`, `train_accuracy`). `sluice serve --demo` registers each
example model with its card, through the registry API.

The credit card declares the slice feature that realized performance is
broken down by (`slice`: age, in bands at 30, 45 and 60).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import platform
from collections import Counter

import numpy as np
import onnxruntime as ort
import sklearn
from sklearn.metrics import accuracy_score, roc_auc_score

ROOT = pathlib.Path(__file__).resolve().parent


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_csv(name: str) -> tuple[list[str], np.ndarray]:
    path = ROOT / "data" / name
    header = path.read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }


def credit_card() -> dict:
    header, data = load_csv("credit_risk_train.csv")
    features, labels = data[:, :-1].astype(np.float32), data[:, -1].astype(np.int64)
    session = ort.InferenceSession(str(ROOT / "repository/credit_risk/1/model.onnx"))
    feeds = {name: features[:, [i]] for i, name in enumerate(header[:-1])}
    predicted, probabilities = session.run(["label", "probabilities"], feeds)
    return {
        "training_run_id": "models/train.py:export_credit",
        "dataset": {"uri": "models/data/credit_risk_train.csv", "sha256": sha256(ROOT / "data/credit_risk_train.csv")},
        "parameters": {"model": "LogisticRegression", "C": "1.0", "max_iter": "1000", "scaler": "StandardScaler (folded)"},
        "metrics": {
            "train_auc": round(float(roc_auc_score(labels, probabilities[:, 1])), 4),
            "train_accuracy": round(float(accuracy_score(labels, predicted)), 4),
        },
        "environment": environment(),
        "intended_use": "Demonstration: scores the default risk of a loan applicant from eight numeric features.",
        "limitations": "Trained on synthetic applicants; metrics are measured on the training set.",
        "slice": {"feature": "age", "edges": [30, 45, 60]},
    }


def digits_card() -> dict:
    _, data = load_csv("digits_train.csv")
    pixels, labels = data[:, :-1].astype(np.float32), data[:, -1].astype(np.int64)
    session = ort.InferenceSession(str(ROOT / "repository/digits/1/model.onnx"))
    (predicted,) = session.run(["label"], {"pixels": pixels})
    return {
        "training_run_id": "models/train.py:export_digits",
        "dataset": {"uri": "models/data/digits_train.csv", "sha256": sha256(ROOT / "data/digits_train.csv")},
        "parameters": {"model": "MLPClassifier", "hidden_layer_sizes": "(64,)", "max_iter": "400"},
        "metrics": {"train_accuracy": round(float(accuracy_score(labels, predicted)), 4)},
        "environment": environment(),
        "intended_use": "Demonstration: recognizes handwritten digits in 8x8 images (values 0..16).",
        "limitations": "scikit-learn's small digits set; metrics are measured on the training set.",
    }


def numeric_profile(values: np.ndarray, bins: int = 10) -> dict:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(values, edges)
    return {
        "kind": "numeric",
        "edges": [float(edge) for edge in edges],
        "shares": [float(count) / len(values) for count in counts],
        "count": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def categorical_profile(values: list[str], top: int = 20) -> dict:
    """The `top` most frequent categories (ties by name) and the share of the rest."""
    ranked = sorted(Counter(values).items(), key=lambda item: (-item[1], item[0]))[:top]
    total = len(values)
    return {
        "kind": "categorical",
        "categories": [category for category, _ in ranked],
        "shares": [count / total for _, count in ranked],
        "other": (total - sum(count for _, count in ranked)) / total,
        "count": total,
    }


def model_outputs(name: str, header: list[str], data: np.ndarray) -> dict[str, np.ndarray]:
    """The committed model's outputs on its training data, with ONNX Runtime."""
    session = ort.InferenceSession(str(ROOT / "repository" / name / "1" / "model.onnx"))
    inputs = session.get_inputs()
    if len(inputs) == 1:
        feeds = {inputs[0].name: data[:, :-1].astype(np.float32)}
    else:
        feeds = {i.name: data[:, header.index(i.name)][:, None].astype(np.float32) for i in inputs}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def output_profiles(outputs: dict[str, np.ndarray]) -> dict:
    """A class output as categories; a score output per column (`probabilities[1]`),
    the names the gateway counts them under."""
    profiles = {}
    for name, values in outputs.items():
        columns = values.reshape(len(values), -1)
        names = [name] if columns.shape[1] == 1 else [f"{name}[{k}]" for k in range(columns.shape[1])]
        for column, column_name in enumerate(names):
            if values.dtype.kind in "iub":
                profiles[column_name] = categorical_profile([str(int(value)) for value in columns[:, column]])
            else:
                profiles[column_name] = numeric_profile(columns[:, column].astype(np.float64))
    return profiles


def profile(name: str) -> dict:
    header, data = load_csv(f"{name}_train.csv")
    features = {feature: numeric_profile(data[:, index]) for index, feature in enumerate(header[:-1])}
    outputs = output_profiles(model_outputs(name, header, data))
    return {"schema": "sluice-profile/v1", "rows": int(len(data)), "features": features, "outputs": outputs}


CONTRACT_MARGIN = 0.1
CREDIT_RULES = ["loan_amount <= 2 * income"]


def contract(profiled: dict, rules: list[str]) -> dict:
    features = {}
    for name, column in profiled["features"].items():
        low, high = column["edges"][0], column["edges"][-1]
        widen = CONTRACT_MARGIN * abs(high - low)
        features[name] = {
            "min": max(low - widen, 0.0) if low >= 0 else low - widen,
            "max": high + widen,
        }
    return {"features": features, "rules": rules}


def main() -> None:
    for name, card in [("credit_risk", credit_card()), ("digits", digits_card())]:
        path = ROOT / "repository" / name / "1" / "card.json"
        path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        print(f"{path.relative_to(ROOT.parent)}: {card['metrics']}")
        profile_path = path.with_name("profile.json")
        profiled = profile(name)
        profile_path.write_text(json.dumps(profiled, sort_keys=True) + "\n")
        print(f"{profile_path.relative_to(ROOT.parent)}")
        if name == "credit_risk":
            contract_path = path.with_name("contract.json")
            contract_path.write_text(json.dumps(contract(profiled, CREDIT_RULES), indent=2, sort_keys=True) + "\n")
            print(f"{contract_path.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
