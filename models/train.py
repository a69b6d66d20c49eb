#!/usr/bin/env python3
"""Train and export Sluice's example models, their training data and reference outputs.

Run from the repository root:

    python3 -m pip install -r models/requirements.txt
    python3 models/train.py

Everything is seeded, so a rerun with the pinned packages writes the same files.
What it writes:

- `models/repository/credit_risk/1/model.onnx`: a logistic-regression credit-risk
  classifier with eight named FP32 inputs (one per feature, shape [N, 1]); the
  standard scaler it was trained behind is folded into its weights so that both
  tract and ONNX Runtime run it.
- `models/repository/digits/1/model.onnx`: an MLP on scikit-learn's 8x8 digits
  (input `pixels` [N, 64], values 0..16).
- `models/ort-only/credit_risk_scaled/1/model.onnx`: the same credit pipeline
  exported as-is, with the ONNX-ML `Scaler` op that tract refuses: a model only
  ONNX Runtime loads.
- `models/test/all_types/1/model.onnx`: one Identity per Open Inference Protocol
  datatype, for codec tests.
- `models/test/unsupported_op/1/model.onnx`: a valid graph on an operator that
  no engine implements, for the "neither engine loads it" error.
- `models/data/*.csv`: the training data each model saw.
- `models/fixtures/*.json`: V2 request bodies and ONNX Runtime's outputs for them,
  the reference the integration tests compare against.
- `models/examples/*.json`: example request bodies for curl.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = pathlib.Path(__file__).resolve().parent
SEED = 20261126
OPSET = {"": 17, "ai.onnx.ml": 3}

CREDIT_FEATURES = [
    "age",
    "income",
    "debt_ratio",
    "credit_lines",
    "late_payments_90d",
    "utilization",
    "months_employed",
    "loan_amount",
]


def write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def save_model(model: onnx.ModelProto, path: pathlib.Path, doc: str) -> None:
    model.doc_string = doc
    model.producer_name = "sluice-models"
    # skl2onnx names graphs with a random uuid: name them after the model so
    # that a rerun writes the same bytes.
    model.graph.name = path.parent.parent.name
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def credit_data(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic loan applications whose default risk follows a known logistic story."""
    age = rng.integers(21, 75, rows).astype(np.float32)
    income = rng.lognormal(mean=10.8, sigma=0.5, size=rows).astype(np.float32)
    debt_ratio = rng.beta(2, 5, rows).astype(np.float32)
    credit_lines = rng.poisson(5, rows).astype(np.float32)
    late_payments = rng.poisson(0.4, rows).astype(np.float32)
    utilization = rng.beta(2, 3, rows).astype(np.float32)
    months_employed = rng.integers(0, 360, rows).astype(np.float32)
    loan_amount = (income * rng.uniform(0.1, 0.8, rows)).astype(np.float32)
    x = np.stack(
        [age, income, debt_ratio, credit_lines, late_payments, utilization, months_employed, loan_amount],
        axis=1,
    )
    logit = (
        -1.2
        - 0.02 * (age - 45)
        - 0.9 * (np.log(income) - 10.8)
        + 3.0 * (debt_ratio - 0.3)
        + 0.9 * late_payments
        + 2.0 * (utilization - 0.4)
        - 0.004 * months_employed
        + 1.5 * (loan_amount / income - 0.45)
    )
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return x, y


def concat_front(model: onnx.ModelProto, joined_input: str, names: list[str]) -> onnx.ModelProto:
    """Replace the single [N, k] input with k named [N, 1] inputs joined by a Concat."""
    graph = model.graph
    old = [i for i in graph.input if i.name == joined_input][0]
    graph.input.remove(old)
    for name in names:
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]))
    graph.node.insert(0, helper.make_node("Concat", names, [joined_input], axis=1, name="join_features"))
    return model


def folded_credit_model(pipeline: Pipeline) -> onnx.ModelProto:
    """The scaler + logistic regression pipeline as one logistic regression
    (the scaler folded into its weights), with one named [N, 1] input per
    feature: the same decision function, which tract runs too."""
    scaler, classifier = pipeline.named_steps["scale"], pipeline.named_steps["classify"]
    folded = LogisticRegression()
    folded.classes_ = classifier.classes_
    folded.coef_ = classifier.coef_ / scaler.scale_
    folded.intercept_ = classifier.intercept_ - (classifier.coef_ * scaler.mean_ / scaler.scale_).sum(axis=1)
    folded.n_features_in_ = len(CREDIT_FEATURES)
    plain = convert_sklearn(
        folded,
        initial_types=[("features", FloatTensorType([None, len(CREDIT_FEATURES)]))],
        options={id(folded): {"zipmap": False}},
        target_opset=OPSET,
    )
    return concat_front(plain, "features", CREDIT_FEATURES)


def export_credit(rng: np.random.Generator) -> None:
    x, y = credit_data(6000, rng)
    train_x, train_y = x[:5000], y[:5000]
    pipeline = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, max_iter=1000))])
    pipeline.fit(train_x, train_y)

    header = ",".join(CREDIT_FEATURES + ["default"])
    rows = np.concatenate([train_x, train_y[:, None].astype(np.float32)], axis=1)
    write(ROOT / "data/credit_risk_train.csv", header + "\n" + "\n".join(",".join(f"{v:.6g}" for v in r) for r in rows) + "\n")

    # The pipeline as-is: ONNX-ML Scaler + LinearClassifier. tract refuses Scaler.
    scaled = convert_sklearn(
        pipeline,
        initial_types=[("features", FloatTensorType([None, len(CREDIT_FEATURES)]))],
        options={id(pipeline): {"zipmap": False}},
        target_opset=OPSET,
    )
    scaled = concat_front(scaled, "features", CREDIT_FEATURES)
    save_model(scaled, ROOT / "ort-only/credit_risk_scaled/1/model.onnx", "credit risk, scaler kept as an ONNX-ML op")

    plain = folded_credit_model(pipeline)
    save_model(plain, ROOT / "repository/credit_risk/1/model.onnx", "credit risk, logistic regression over 8 named features")

    holdout = x[5000:5008]
    inputs = [
        {"name": name, "shape": [len(holdout), 1], "datatype": "FP32", "data": holdout[:, i].tolist()}
        for i, name in enumerate(CREDIT_FEATURES)
    ]
    feeds = {name: holdout[:, i : i + 1].copy() for i, name in enumerate(CREDIT_FEATURES)}
    write_fixture("credit_risk", ROOT / "repository/credit_risk/1/model.onnx", inputs, feeds)
    write_fixture("credit_risk_scaled", ROOT / "ort-only/credit_risk_scaled/1/model.onnx", inputs, feeds)
    example = {
        "id": "application-42",
        "inputs": [
            {"name": name, "shape": [1, 1], "datatype": "FP32", "data": [float(holdout[0, i])]}
            for i, name in enumerate(CREDIT_FEATURES)
        ],
    }
    write(ROOT / "examples/credit_risk.json", json.dumps(example, indent=2) + "\n")


def export_digits(rng: np.random.Generator) -> None:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    train_x, train_y = x[:1500], y[:1500]
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=SEED % (2**31))
    mlp.fit(train_x, train_y)
    # Named as the model's input columns are, so drift and contracts find them.
    header = ",".join([f"pixels[{i}]" for i in range(64)] + ["digit"])
    rows = np.concatenate([train_x, train_y[:, None].astype(np.float32)], axis=1)
    write(ROOT / "data/digits_train.csv", header + "\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows) + "\n")

    model = convert_sklearn(
        mlp,
        initial_types=[("pixels", FloatTensorType([None, 64]))],
        options={id(mlp): {"zipmap": False}},
        target_opset=OPSET,
    )
    path = ROOT / "repository/digits/1/model.onnx"
    save_model(model, path, "handwritten digits (8x8, values 0..16), one hidden layer of 64")
    holdout = x[1500:1506]
    inputs = [{"name": "pixels", "shape": [len(holdout), 64], "datatype": "FP32", "data": holdout.tolist()}]
    write_fixture("digits", path, inputs, {"pixels": holdout})
    example = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": holdout[0].tolist()}]}
    write(ROOT / "examples/digits.json", json.dumps(example) + "\n")


ALL_TYPES = [
    ("BOOL", TensorProto.BOOL, np.bool_),
    ("UINT8", TensorProto.UINT8, np.uint8),
    ("UINT16", TensorProto.UINT16, np.uint16),
    ("UINT32", TensorProto.UINT32, np.uint32),
    ("UINT64", TensorProto.UINT64, np.uint64),
    ("INT8", TensorProto.INT8, np.int8),
    ("INT16", TensorProto.INT16, np.int16),
    ("INT32", TensorProto.INT32, np.int32),
    ("INT64", TensorProto.INT64, np.int64),
    ("FP16", TensorProto.FLOAT16, np.float16),
    ("FP32", TensorProto.FLOAT, np.float32),
    ("FP64", TensorProto.DOUBLE, np.float64),
]


def export_all_types() -> None:
    """Identity per datatype: outputs equal inputs, so codecs are tested, not arithmetic."""
    nodes, inputs, outputs = [], [], []
    for name, proto_type, _ in ALL_TYPES:
        lower = name.lower()
        inputs.append(helper.make_tensor_value_info(f"in_{lower}", proto_type, ["N", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{lower}", proto_type, ["N", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{lower}"], [f"out_{lower}"]))
    graph = helper.make_graph(nodes, "all_types", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = ROOT / "test/all_types/1/model.onnx"
    save_model(model, path, "identity for every datatype")
    values = {
        "BOOL": [[True, False, True], [False, False, True]],
        "UINT8": [[0, 1, 255], [7, 8, 9]],
        "UINT16": [[0, 1, 65535], [7, 8, 9]],
        "UINT32": [[0, 1, 4294967295], [7, 8, 9]],
        "UINT64": [[0, 1, 18446744073709551615], [7, 8, 9]],
        "INT8": [[-128, 0, 127], [-1, 2, -3]],
        "INT16": [[-32768, 0, 32767], [-1, 2, -3]],
        "INT32": [[-2147483648, 0, 2147483647], [-1, 2, -3]],
        "INT64": [[-9223372036854775808, 0, 9223372036854775807], [-1, 2, -3]],
        "FP16": [[0.5, -1.25, 65504.0], [0.0, 3.0, -2.0]],
        "FP32": [[0.1, -2.5, 3.4e38], [1e-7, 0.0, -1.0]],
        "FP64": [[0.1, -2.5, 1.7e308], [1e-300, 0.0, -1.0]],
    }
    request_inputs, feeds = [], {}
    for name, _, dtype in ALL_TYPES:
        lower = name.lower()
        array = np.array(values[name], dtype=dtype)
        feeds[f"in_{lower}"] = array
        data = values[name]
        request_inputs.append({"name": f"in_{lower}", "shape": [2, 3], "datatype": name, "data": data})
    write_fixture("all_types", path, request_inputs, feeds)


def export_unsupported() -> None:
    """A valid ONNX graph built on an operator no engine implements."""
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example.sluice")],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.sluice", 1)]
    )
    model.ir_version = 8
    model.doc_string = "an operator that exists nowhere"
    path = ROOT / "test/unsupported_op/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))  # no check_model: the checker rightly refuses it


def write_fixture(name: str, path: pathlib.Path, inputs: list, feeds: dict) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    datatypes = {np.dtype(t): n for n, _, t in ALL_TYPES}
    outputs = []
    for output_name, value in zip(names, results):
        value = np.asarray(value)
        outputs.append(
            {
                "name": output_name,
                "shape": list(value.shape),
                "datatype": datatypes[value.dtype],
                "data": value.reshape(-1).tolist(),
            }
        )
    fixture = {
        "model": name,
        "onnxruntime": ort.__version__,
        "request": {"inputs": inputs},
        "outputs": outputs,
    }
    write(ROOT / f"fixtures/{name}.json", json.dumps(fixture) + "\n")


def main() -> None:
    rng = np.random.default_rng(SEED)
    export_credit(rng)
    export_digits(rng)
    export_all_types()
    export_unsupported()


if __name__ == "__main__":
    main()
