#!/usr/bin/env python3
"""Write two bad canaries for rollout tests, each a realistic defect grafted onto the credit model.

Run from the repository root after `models/train.py`:

    python3 models/faulty.py

`models/test/credit_risk_faulty/1/model.onnx` fails for part of the input: its scores
are reshaped to a width computed from `floor(age / 60)`, so it answers exactly
as the original for applicants under 60 and fails at run time (ONNX Runtime:
"cannot be reshaped", a server error, not the client's) for the 28% of
applicants aged 60 and over. Inputs, outputs and every answer it does give
are the original's.

`models/test/credit_risk_inverted/1/model.onnx` never fails but answers far
from the original: its class scores and labels are swapped, as a retraining
with an inverted target encoding would leave them. Only a comparison with the
stable version's answers catches it.

`models/test/credit_risk_refusing/1/model.onnx` is refused by its engine for
the same 28%: its scores are multiplied by an element gathered at index
`floor(age / 60)` from a one-element table, an index ONNX Runtime rejects as
out of range (`INVALID_ARGUMENT`, which callers see as a 400). Its warm-up on
zeros passes; every answer it gives is the original's.

`models/test/credit_risk_nan/1/model.onnx` answers every request, but its
class scores are NaN for the same 28% (the square root of
`-floor(age / 60)` is added to them: -0 under sixty, NaN from sixty on). Its
labels, and every score under sixty, are the original's.

`models/test/credit_risk_slow/1/model.onnx` answers exactly as the original,
slowly: before its scores it multiplies a 384 by 384 matrix built from the
request's ages through sixteen matrix products (a model grown too big for its
latency budget), about 20 ms more a request on one core, where the original
takes a tenth of a millisecond. Its warm-up passes; it never fails.

`models/test/credit_risk_constant/1/model.onnx` gives every applicant the
same answer, class 1 with certainty, as a model trained on a broken label
column would: it never fails, and disagrees with the original on the 92%
of applicants the original puts in class 0.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent


def save(model: onnx.ModelProto, name: str) -> None:
    """Checks `model` and writes it as version 1 of `name` under models/test."""
    model.graph.name = name
    onnx.checker.check_model(model)
    path = ROOT / f"test/{name}/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    print(f"wrote {path.relative_to(ROOT.parent)}")


def add_constants(graph: onnx.GraphProto, constants: dict) -> None:
    """Adds each array of `constants` to `graph` as an initializer of its name."""
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())


def load_with_raw_outputs() -> onnx.ModelProto:
    """The credit model with its outputs renamed *_raw, for nodes to be added after."""
    model = onnx.load(ROOT / "repository/credit_risk/1/model.onnx")
    for node in model.graph.node:
        node.output[:] = [f"{out}_raw" if out in ("label", "probabilities") else out for out in node.output]
    return model


def inverted() -> None:
    model = load_with_raw_outputs()
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1, 0], dtype=np.int64), "swapped_columns"),
            numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Gather", ["probabilities_raw", "swapped_columns"], ["probabilities"], axis=1),
            helper.make_node("Sub", ["one", "label_raw"], ["label"]),
        ]
    )
    save(model, "credit_risk_inverted")


def faulty() -> None:
    model = onnx.load(ROOT / "repository/credit_risk/1/model.onnx")
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["probabilities_raw" if out == "probabilities" else out for out in node.output]
    constants = {
        "sixty": np.array(60.0, dtype=np.float32),
        "two": np.array(2, dtype=np.int64),
        "axis_zero": np.array([0], dtype=np.int64),
        "any_rows": np.array([-1], dtype=np.int64),
    }
    add_constants(graph, constants)
    graph.node.extend(
        [
            helper.make_node("Div", ["age", "sixty"], ["age_over_sixty"]),
            helper.make_node("Floor", ["age_over_sixty"], ["age_bucket_float"]),
            helper.make_node("Cast", ["age_bucket_float"], ["age_bucket"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["age_bucket"], ["oldest_bucket"], keepdims=0),
            helper.make_node("Add", ["oldest_bucket", "two"], ["width"]),
            helper.make_node("Unsqueeze", ["width", "axis_zero"], ["width_1d"]),
            helper.make_node("Concat", ["any_rows", "width_1d"], ["score_shape"], axis=0),
            helper.make_node("Reshape", ["probabilities_raw", "score_shape"], ["probabilities"]),
        ]
    )
    save(model, "credit_risk_faulty")


def refusing() -> None:
    model = load_with_raw_outputs()
    graph = model.graph
    constants = {
        "sixty": np.array(60.0, dtype=np.float32),
        "one_element": np.array([1.0], dtype=np.float32),
    }
    add_constants(graph, constants)
    graph.node.extend(
        [
            helper.make_node("Div", ["age", "sixty"], ["age_over_sixty"]),
            helper.make_node("Floor", ["age_over_sixty"], ["age_bucket_float"]),
            helper.make_node("Cast", ["age_bucket_float"], ["age_bucket"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["age_bucket"], ["oldest_bucket"], keepdims=0),
            # In range (index 0) under sixty; out of range, refused, from sixty on.
            helper.make_node("Gather", ["one_element", "oldest_bucket"], ["factor"], axis=0),
            helper.make_node("Mul", ["probabilities_raw", "factor"], ["probabilities"]),
            helper.make_node("Identity", ["label_raw"], ["label"]),
        ]
    )
    save(model, "credit_risk_refusing")


def nan_scores() -> None:
    model = load_with_raw_outputs()
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array(60.0, dtype=np.float32), "sixty"))
    graph.node.extend(
        [
            helper.make_node("Div", ["age", "sixty"], ["age_over_sixty"]),
            helper.make_node("Floor", ["age_over_sixty"], ["age_bucket"]),
            helper.make_node("Neg", ["age_bucket"], ["minus_bucket"]),
            # sqrt(-0) is -0 (adds nothing); sqrt(-1) is NaN.
            helper.make_node("Sqrt", ["minus_bucket"], ["nan_from_sixty"]),
            helper.make_node("Add", ["probabilities_raw", "nan_from_sixty"], ["probabilities"]),
            helper.make_node("Identity", ["label_raw"], ["label"]),
        ]
    )
    save(model, "credit_risk_nan")


def constant() -> None:
    model = load_with_raw_outputs()
    graph = model.graph
    constants = {
        "zero_float": np.array(0.0, dtype=np.float32),
        "certain_default": np.array([0.0, 1.0], dtype=np.float32),
        "zero_int": np.array(0, dtype=np.int64),
        "one_int": np.array(1, dtype=np.int64),
    }
    add_constants(graph, constants)
    graph.node.extend(
        [
            # The original's shapes, with every value replaced.
            helper.make_node("Mul", ["probabilities_raw", "zero_float"], ["no_scores"]),
            helper.make_node("Add", ["no_scores", "certain_default"], ["probabilities"]),
            helper.make_node("Mul", ["label_raw", "zero_int"], ["no_labels"]),
            helper.make_node("Add", ["no_labels", "one_int"], ["label"]),
        ]
    )
    save(model, "credit_risk_constant")


def slow(size: int = 384, products: int = 16) -> None:
    model = load_with_raw_outputs()
    graph = model.graph
    constants = {
        "square": np.array([size, size], dtype=np.int64),
        "small": np.array(1e-6, dtype=np.float32),
        "zero_float": np.array(0.0, dtype=np.float32),
    }
    add_constants(graph, constants)
    # Averaging weights keep every product's values where the first were:
    # no overflow, no subnormals, so the time is the same for any input.
    average = helper.make_tensor("average", TensorProto.FLOAT, [1], [1.0 / size])
    nodes = [
        helper.make_node("ConstantOfShape", ["square"], ["weights"], value=average),
        # Built from the input, so no engine can fold the work away at load.
        helper.make_node("ReduceSum", ["age"], ["age_sum"], keepdims=0),
        helper.make_node("Mul", ["age_sum", "small"], ["seed"]),
        helper.make_node("Expand", ["seed", "square"], ["work_0"]),
    ]
    for step in range(products):
        nodes.append(helper.make_node("MatMul", [f"work_{step}", "weights"], [f"work_{step + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"work_{products}"], ["work_sum"], keepdims=0),
        helper.make_node("Mul", ["work_sum", "zero_float"], ["nothing"]),
        helper.make_node("Add", ["probabilities_raw", "nothing"], ["probabilities"]),
        helper.make_node("Identity", ["label_raw"], ["label"]),
    ]
    graph.node.extend(nodes)
    save(model, "credit_risk_slow")


if __name__ == "__main__":
    faulty()
    inverted()
    refusing()
    nan_scores()
    constant()
    slow()
