#!/usr/bin/env python3
"""Checks a V2 server of the side-by-side benchmark before it is measured.

    python3 benches/peers/check_server.py BASE_URL OUT_DIR [MODEL ...]

For each model (default mlp, logreg30, cnn) posts OUT_DIR/requests/{model}.json
(with an `id`) to BASE_URL/v2/models/{model}/infer and checks the V2 answer
(model_name, id echoed, outputs with name, datatype, shape, data) against ONNX
Runtime run here on OUT_DIR/repository/{model}/1/model.onnx (max abs diff
< 1e-5); then that an unknown model answers 404, a wrong shape 400 and malformed
JSON 400 (or 422, which MLServer's FastAPI body validation answers).
Needs numpy and onnxruntime (any of the benchmark's venvs). Exits 1 on failure.
"""

from __future__ import annotations

import json
import pathlib
import sys
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main() -> int:
    base, out = sys.argv[1].rstrip("/"), pathlib.Path(sys.argv[2])
    models = sys.argv[3:] or ["mlp", "logreg30", "cnn"]
    failures = []
    for model in models:
        body = json.loads((out / "requests" / f"{model}.json").read_text())
        body["id"] = f"check-{model}"
        status, raw = post(f"{base}/v2/models/{model}/infer", json.dumps(body).encode())
        if status != 200:
            failures.append(f"{model}: HTTP {status}: {raw[:200]!r}")
            continue
        answer = json.loads(raw)
        session = ort.InferenceSession(str(out / "repository" / model / "1" / "model.onnx"))
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in body["inputs"]
        }
        names = [o.name for o in session.get_outputs()]
        expected = dict(zip(names, session.run(names, feeds)))
        if answer.get("model_name") != model or answer.get("id") != body["id"]:
            failures.append(f"{model}: model_name/id {answer.get('model_name')!r}/{answer.get('id')!r}")
        got = {o["name"]: o for o in answer.get("outputs", [])}
        for name, want in expected.items():
            output = got.get(name)
            if output is None:
                failures.append(f"{model}: no output '{name}'")
                continue
            data = np.asarray(output["data"], dtype=np.float32)
            if output["datatype"] != "FP32" or list(output["shape"]) != list(want.shape) or data.size != want.size:
                failures.append(f"{model}: {name} {output['datatype']} {output['shape']} vs FP32 {list(want.shape)}")
                continue
            diff = float(np.max(np.abs(data.reshape(want.shape) - want)))
            print(f"{model}: {name} shape {output['shape']} max abs diff {diff:.2e}")
            if diff >= 1e-5:
                failures.append(f"{model}: {name} max abs diff {diff}")
    status, raw = post(f"{base}/v2/models/no_such_model/infer", (out / "requests" / f"{models[0]}.json").read_bytes())
    print(f"unknown model: HTTP {status} {raw[:120]!r}")
    if status != 404:
        failures.append(f"unknown model answered {status}, not 404")
    bad = json.loads((out / "requests" / f"{models[0]}.json").read_text())
    bad["inputs"][0]["shape"] = [1, 7]
    status, raw = post(f"{base}/v2/models/{models[0]}/infer", json.dumps(bad).encode())
    print(f"bad shape: HTTP {status} {raw[:160]!r}")
    if status != 400:
        failures.append(f"bad shape answered {status}, not 400")
    status, raw = post(f"{base}/v2/models/{models[0]}/infer", b"{not json")
    print(f"bad JSON: HTTP {status} {raw[:120]!r}")
    if status not in (400, 422):  # 422: MLServer's FastAPI body validation
        failures.append(f"bad JSON answered {status}, not 400")
    for failure in failures:
        print("FAIL", failure)
    print("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
