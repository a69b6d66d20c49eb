#!/usr/bin/env python3
"""Write a model whose run time the client chooses, for the hung-engine tests.

Run from the repository root:

    python3 models/slow.py

`models/test/slow/1/model.onnx` takes `x` (FP32 [1, K]) and answers `y`
(FP32 [1, 1]): the sum of the K by K outer product of `x` with itself,
multiplied by itself 24 times. K = 1 runs in microseconds; K = 1500 keeps
one core busy for seconds on either engine (the request stays small).
Send zeros: other values overflow or turn subnormal, and time goes wild.
It stands for a real model that hangs on some inputs (a loop that does not
converge, an input-sized allocation): the gateway must fail that request
alone and mark the version unhealthy, not hang with it.

The work is a chain of nodes, not one: ONNX Runtime checks a run's
terminate flag between nodes, so a run of this model can be stopped;
tract has no such flag, and its runs end when they end.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent
MATMULS = 24


def slow() -> None:
    initializers = [numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "both_axes")]
    # Shapes follow from the input's dims alone, as tract needs.
    nodes = [
        helper.make_node("Transpose", ["x"], ["column"], perm=[1, 0]),
        helper.make_node("MatMul", ["column", "x"], ["m0"]),
    ]
    for step in range(1, MATMULS + 1):
        nodes.append(helper.make_node("MatMul", [f"m{step - 1}", "m0"], [f"m{step}"]))
    nodes.append(helper.make_node("ReduceSum", [f"m{MATMULS}", "both_axes"], ["y"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "K"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = ROOT / "test/slow/1/model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    print(f"wrote {path.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    slow()
