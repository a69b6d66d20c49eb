#!/usr/bin/env python3
"""Write small graphs with the shapes real exported models have, each the
smallest that fails the way a public model failed in Sluice before:

    python3 models/awkward.py

- `models/test/detector_like/1/model.onnx`: `images [batch, 3, height, width]`
  pooled by 2 and by 4, the coarser map upsampled and concatenated with the
  finer, as a YOLO neck does: it runs from 8x8 pixels up, never on 1x1.
- `models/test/vad_like/1/model.onnx`: audio `input [N, T]` (unnamed dims),
  a recurrent `state [2, N, 128]` with the batch on axis 1, and a scalar
  INT64 `sr` of shape `[]`, as Silero's voice-activity model takes them; the
  audio is padded in reflect mode by 2, so it needs more than 2 samples.
- `models/test/paddle_like/1/model.onnx`: `x [-1, 3, "?", "?"]`, as
  Paddle2ONNX writes every unknown dim, pooled and classified into 2
  directions: a 48x192 image is as valid as a square one.
- `models/test/reshape_by_three/1/model.onnx`: `x [N, T]` reshaped to rows of
  3: no synthetic input runs it (its sizes are powers of two), a `[1, 3]`
  or `[1, 6]` request does.
- `models/test/iris_zipmap/1/model.onnx`: scikit-learn's logistic regression
  on its bundled iris data, with the species as string labels, converted by
  `skl2onnx.to_onnx` with its defaults: a string `output_label [N]` and a
  `ZipMap` `output_probability`, a sequence of maps from species to score.
- `models/test/cancer_gbm/1/model.onnx`: a gradient-boosted ensemble (20
  trees of depth 3) on scikit-learn's bundled breast-cancer data, a binary
  `TreeEnsembleClassifier` with skl2onnx's defaults (INT64 labels, ZipMap).
- `models/test/color_codes/1/model.onnx`: a string input `color [N]` encoded
  by ONNX-ML's `LabelEncoder` to an INT64 `code [N]` (unknown: -1) and to a
  string `family [N]` (unknown: "other"), as a text pipeline's lookup step.

The scikit-learn models' bytes are not the same from run to run (the graphs
are): after writing them again, update their sha256 in
tests/corpus/manifest.toml.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent
OPSET = [helper.make_opsetid("", 18)]


def save(graph: onnx.GraphProto, name: str) -> None:
    """Checks the graph as a model and writes it as version 1 of `name` under models/test."""
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="sluice models/awkward.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = ROOT / f"test/{name}/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def unnamed(*dims: int | str | None) -> list:
    """Dims for make_tensor_value_info: None leaves a dim unnamed and unknown."""
    return list(dims)


def detector_like() -> None:
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 6, None, None])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node("MaxPool", ["images"], ["fine"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("MaxPool", ["images"], ["coarse"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Resize", ["coarse", "", "scales"], ["upsampled"], mode="nearest"),
        helper.make_node("Concat", ["fine", "upsampled"], ["features"], axis=1),
    ]
    save(helper.make_graph(nodes, "detector_like", [images], [features], [scales]), "detector_like")


def vad_like() -> None:
    audio = helper.make_tensor_value_info("input", TensorProto.FLOAT, unnamed(None, None))
    state = helper.make_tensor_value_info("state", TensorProto.FLOAT, unnamed(2, None, 128))
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, unnamed(None, 1))
    state_n = helper.make_tensor_value_info("stateN", TensorProto.FLOAT, unnamed(2, None, 128))
    pads = numpy_helper.from_array(np.array([0, 2, 0, 2], dtype=np.int64), "pads")
    axes_time = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_time")
    axes_state = numpy_helper.from_array(np.array([0, 2], dtype=np.int64), "axes_state")
    half = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")
    per_khz = numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "per_khz")
    nodes = [
        helper.make_node("Pad", ["input", "pads"], ["padded"], mode="reflect"),
        helper.make_node("ReduceMean", ["padded", "axes_time"], ["energy"], keepdims=1),
        helper.make_node("ReduceMean", ["state", "axes_state"], ["memory"], keepdims=0),
        helper.make_node("Unsqueeze", ["memory", "axes_time"], ["memory_column"]),
        helper.make_node("Cast", ["sr"], ["rate"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rate", "per_khz"], ["rate_term"]),
        helper.make_node("Add", ["energy", "memory_column"], ["mixed"]),
        helper.make_node("Add", ["mixed", "rate_term"], ["output"]),
        helper.make_node("Mul", ["state", "half"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes, "vad_like", [audio, state, sr], [output, state_n], [pads, axes_time, axes_state, half, per_khz]
    )
    save(graph, "vad_like")


def paddle_like() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])
    x.type.tensor_type.shape.dim[0].ClearField("dim_param")
    x.type.tensor_type.shape.dim[0].dim_value = -1
    scores = helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [-1, 2])
    scores.type.tensor_type.shape.dim[0].dim_value = -1
    weights = numpy_helper.from_array(np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 1.5]], dtype=np.float32), "w")
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["softmax_0.tmp_0"], axis=1),
    ]
    model_graph = helper.make_graph(nodes, "paddle_like", [x], [scores], [weights])
    # onnx.checker refuses a negative dim_value; Paddle2ONNX writes it anyway.
    model = helper.make_model(model_graph, opset_imports=OPSET, producer_name="sluice models/awkward.py")
    model.ir_version = 8
    path = ROOT / "test/paddle_like/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def reshape_by_three() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])
    rows = helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 3])
    shape = numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["rows"])]
    save(helper.make_graph(nodes, "reshape_by_three", [x], [rows], [shape]), "reshape_by_three")


def color_codes() -> None:
    color = helper.make_tensor_value_info("color", TensorProto.STRING, ["N"])
    code = helper.make_tensor_value_info("code", TensorProto.INT64, ["N"])
    family = helper.make_tensor_value_info("family", TensorProto.STRING, ["N"])
    colors = ["red", "green", "blue", "crimson"]
    nodes = [
        helper.make_node(
            "LabelEncoder", ["color"], ["code"], domain="ai.onnx.ml",
            keys_strings=colors, values_int64s=[0, 1, 2, 3], default_int64=-1,
        ),
        helper.make_node(
            "LabelEncoder", ["color"], ["family"], domain="ai.onnx.ml",
            keys_strings=colors, values_strings=["warm", "cool", "cool", "warm"], default_string="other",
        ),
    ]
    graph = helper.make_graph(nodes, "color_codes", [color], [code, family])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 2)],
        producer_name="sluice models/awkward.py",
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = ROOT / "test/color_codes/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def save_classifier(classifier, features: np.ndarray, name: str) -> None:
    """Converts a fitted scikit-learn classifier with skl2onnx's defaults (a
    label output and a ZipMap) and writes it as version 1 of `name`."""
    # Imported here: the other graphs need only onnx.
    from skl2onnx import to_onnx

    model = to_onnx(classifier, features[:1], target_opset={"": 18, "ai.onnx.ml": 3})
    model.graph.name = name
    onnx.checker.check_model(model, full_check=True)
    path = ROOT / f"test/{name}/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


def iris_zipmap() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    species = np.array(iris.target_names)[iris.target]
    features = iris.data.astype(np.float32)
    save_classifier(LogisticRegression(max_iter=500).fit(features, species), features, "iris_zipmap")


def cancer_gbm() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier

    data = load_breast_cancer()
    features = data.data.astype(np.float32)
    classifier = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0)
    save_classifier(classifier.fit(features, data.target), features, "cancer_gbm")


if __name__ == "__main__":
    detector_like()
    vad_like()
    paddle_like()
    reshape_by_three()
    color_codes()
    iris_zipmap()
    cancer_gbm()
