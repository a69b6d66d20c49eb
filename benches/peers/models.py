#!/usr/bin/env python3
"""The side-by-side benchmark's models and request bodies, built with onnx.helper.

    python3 benches/peers/models.py OUT_DIR

writes `OUT_DIR/repository`, a Triton-style repository that Sluice and the
FastAPI baseline both serve:

- `mlp/1/model.onnx`: MLP 784-512-512-10 (Gemm + Relu, softmax), input `input` [N, 784];
- `logreg30/1/model.onnx`: a 30-feature logistic regression in plain ops
  (MatMul, Add, Sigmoid), input `features` [N, 30];
- `cnn/1/model.onnx`: a CIFAR-sized small CNN, input `image` [N, 3, 32, 32]:
  three 3x3 convolutions (16, 32, 64 channels) with ReLU, max-pooling between
  them, global average pooling and a dense layer to 10 classes;
- `mlp_batched/`, `cnn_batched/`: the same models with dynamic batching in
  their `config.toml`;
- `OUT_DIR/requests/{model}.json`: one V2 JSON request of one row each.

Weights are seeded random: the benchmark measures serving, not accuracy. Every
model's outputs are checked against ONNX Runtime by the gateway's own tests of
the engines; here ONNX Runtime runs each model once to refuse a broken graph.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 20261126
BATCHED = ["mlp", "cnn"]
BATCHING = """# Dynamic batching: a free executor takes every queued request, up to 32 rows.
[batching]
max_batch_size = 32
max_queue_delay_us = 0
instances = 1
"""


def weights(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bench", inputs, outputs, initializers)
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    built.ir_version = 9
    onnx.checker.check_model(built)
    return built


def tensor(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def mlp(rng: np.random.Generator) -> onnx.ModelProto:
    sizes = [784, 512, 512, 10]
    nodes, initializers, current = [], [], "input"
    for layer, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        initializers += [
            numpy_helper.from_array(weights(rng, (fan_in, fan_out), fan_in), f"w{layer}"),
            numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{layer}"),
        ]
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [f"dense{layer}"]))
        current = f"dense{layer}"
        if fan_out != sizes[-1]:
            nodes.append(helper.make_node("Relu", [current], [f"relu{layer}"]))
            current = f"relu{layer}"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    return model(nodes, [tensor("input", ["N", 784])], [tensor("probabilities", ["N", 10])], initializers)


def logreg30(rng: np.random.Generator) -> onnx.ModelProto:
    initializers = [
        numpy_helper.from_array(weights(rng, (30, 1), 30), "coef"),
        numpy_helper.from_array(np.array([-0.5], np.float32), "intercept"),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "coef"], ["margin"]),
        helper.make_node("Add", ["margin", "intercept"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    return model(nodes, [tensor("features", ["N", 30])], [tensor("probability", ["N", 1])], initializers)


def cnn(rng: np.random.Generator) -> onnx.ModelProto:
    nodes, initializers, current, channels = [], [], "image", 3
    for layer, out_channels in enumerate([16, 32, 64]):
        initializers += [
            numpy_helper.from_array(
                weights(rng, (out_channels, channels, 3, 3), channels * 9), f"conv{layer}_w"
            ),
            numpy_helper.from_array(np.zeros(out_channels, np.float32), f"conv{layer}_b"),
        ]
        nodes += [
            helper.make_node(
                "Conv", [current, f"conv{layer}_w", f"conv{layer}_b"], [f"conv{layer}"],
                kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            ),
            helper.make_node("Relu", [f"conv{layer}"], [f"relu{layer}"]),
        ]
        current, channels = f"relu{layer}", out_channels
        if layer < 2:
            nodes.append(helper.make_node("MaxPool", [current], [f"pool{layer}"], kernel_shape=[2, 2], strides=[2, 2]))
            current = f"pool{layer}"
    initializers += [
        numpy_helper.from_array(weights(rng, (channels, 10), channels), "dense_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "dense_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return model(nodes, [tensor("image", ["N", 3, 32, 32])], [tensor("probabilities", ["N", 10])], initializers)


def request(name: str, shape: list[int], rng: np.random.Generator) -> dict:
    data = rng.random(int(np.prod(shape)), dtype=np.float32)
    return {"inputs": [{"name": name, "datatype": "FP32", "shape": shape, "data": [round(float(x), 6) for x in data]}]}


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    rng = np.random.default_rng(SEED)
    built = {"mlp": mlp(rng), "logreg30": logreg30(rng), "cnn": cnn(rng)}
    bodies = {
        "mlp": request("input", [1, 784], rng),
        "logreg30": request("features", [1, 30], rng),
        "cnn": request("image", [1, 3, 32, 32], rng),
    }
    repository = out / "repository"
    (out / "requests").mkdir(parents=True, exist_ok=True)
    for name, graph in built.items():
        bytes_ = graph.SerializeToString()
        # ONNX Runtime must run it: a broken graph fails here, not mid-benchmark.
        session = ort.InferenceSession(bytes_, providers=["CPUExecutionProvider"])
        inputs = bodies[name]["inputs"][0]
        session.run(None, {inputs["name"]: np.array(inputs["data"], np.float32).reshape(inputs["shape"])})
        for served in [name] + ([f"{name}_batched"] if name in BATCHED else []):
            directory = repository / served / "1"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "model.onnx").write_bytes(bytes_)
        (out / "requests" / f"{name}.json").write_text(json.dumps(bodies[name]))
    for name in BATCHED:
        (repository / f"{name}_batched" / "config.toml").write_text(BATCHING)


if __name__ == "__main__":
    main()
