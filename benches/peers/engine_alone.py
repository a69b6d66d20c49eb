"""The engine alone, from Python: each benchmark model run by the
`onnxruntime` package with one intra-op thread, the input built once, as
ONNX Runtime's own benchmark loop would. The second standalone baseline of
`benches/peers.sh`, beside `target/release/engine_alone` (the same library
through Rust's `ort`): prints the median run and runs per second per model.

    python engine_alone.py DIR   # DIR as written by models.py
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
import onnxruntime as ort

MODELS = ["mlp", "logreg30", "cnn"]


def main() -> None:
    root = pathlib.Path(sys.argv[1])
    print(f"{'model':<10} {'run µs':>12} {'runs/s':>12}")
    for name in MODELS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(root / "repository" / name / "1" / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        request = json.loads((root / "requests" / f"{name}.json").read_text())
        first = request["inputs"][0]
        feeds = {session.get_inputs()[0].name: np.asarray(first["data"], dtype=np.float32).reshape(first["shape"])}
        samples = 2_000 if name == "cnn" else 20_000
        for _ in range(samples // 10 + 1):
            session.run(None, feeds)
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - started)
        times.sort()
        run = times[len(times) // 2]
        print(f"{name:<10} {run * 1e6:>12.1f} {1 / run:>12.0f}")


if __name__ == "__main__":
    main()
