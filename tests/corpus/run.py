#!/usr/bin/env python3
"""Serves the public model corpus (manifest.toml) with `sluice serve` on each
engine and checks every answer against ONNX Runtime's own, in Python.

    python3 tests/corpus/run.py [--sluice target/debug/sluice] [--only NAME] [--table docs/corpus.md]

Two gateways serve a model repository of every model: one with ONNX Runtime
(`backend = "ort"`), one without its library (`backend = "tract"`). For each
model and engine the repository index must say what the manifest expects
(READY on that engine, or UNAVAILABLE with the reason's words). Each served
model runs every case of the manifest, through plain JSON (as curl would)
and through tritonclient's binary tensors, and each output must equal ONNX
Runtime's within the engine's tolerance. Real inputs shipped in packages (a
photograph, a speech recording, a line of text rendered with a packaged
font) must also give the answer they mean, so a model that returns nothing
useful on real data cannot pass. The last line says `N passed, M failed`.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import wave

import numpy as np
import onnxruntime
import tritonclient.http as triton

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = pathlib.Path(__file__).with_name("manifest.toml")

# ONNX Runtime in the gateway and in Python is the same library: their
# answers agree to rounding. tract's kernels sum in another order.
TOLERANCE = {"ort": 1e-4, "tract": 1e-3}

DATATYPES = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(bool)": ("BOOL", np.bool_),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(string)": ("BYTES", np.object_),
}


class Failures:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAILED: {what}", file=sys.stderr)
        return ok


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Gateway:
    """`sluice serve` on a repository, on an ephemeral port."""

    def __init__(self, sluice: str, repository: pathlib.Path, with_ort: bool, log: pathlib.Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        if not with_ort:
            env.pop("ORT_DYLIB_PATH", None)
        env["RUST_LOG"] = "warn"
        command = [
            sluice, "serve", "--model-repository", str(repository),
            "--listen", f"127.0.0.1:{self.port}", "--strict-readiness=false",
            "--repository-poll-ms", "60000",
        ]
        self.log = open(log, "wb")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"sluice exited with {self.process.returncode}; its log: {log}")
            try:
                if http("GET", f"{self.url}/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"sluice was not ready within 300 s; its log: {log}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def values(spec: dict, dtype: type, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(spec["shape"])
    if "uniform" in spec:
        low, high = spec["uniform"]
        return rng.uniform(low, high, size=shape).astype(dtype)
    if "text" in spec:
        choices = np.array(spec["text"], dtype=np.object_)
        return choices[rng.integers(0, len(choices), size=shape)]
    if "integers" in spec:
        low, high = spec["integers"]
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return np.full(shape, spec["value"], dtype=dtype)


def infer_json(url: str, model: str, feeds: dict[str, np.ndarray], types: dict[str, str]) -> dict[str, np.ndarray]:
    body = {
        "inputs": [
            {"name": name, "datatype": types[name], "shape": list(array.shape), "data": array.flatten().tolist()}
            for name, array in feeds.items()
        ]
    }
    status, answer = http("POST", f"{url}/v2/models/{model}/infer", json.dumps(body).encode())
    if status != 200:
        raise RuntimeError(f"JSON infer answered {status}: {answer}")
    return {
        out["name"]: np.array(out["data"], dtype=np.object_ if out["datatype"] == "BYTES" else None).reshape(out["shape"])
        for out in answer["outputs"]
    }


def infer_triton(url: str, model: str, feeds: dict[str, np.ndarray], types: dict[str, str], outputs: list[str]):
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
    inputs = []
    for name, array in feeds.items():
        tensor = triton.InferInput(name, list(array.shape), types[name])
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    requested = [triton.InferRequestedOutput(name, binary_data=True) for name in outputs]
    result = client.infer(model, inputs, outputs=requested)
    return {name: result.as_numpy(name) for name in outputs}


def as_tensor(answer):
    """ONNX Runtime's answer as a tensor: a ZipMap's list of maps becomes the
    [N, K] scores in class order (its maps keep the labels' order), as Sluice
    serves it."""
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        return np.array([list(row.values()) for row in answer], dtype=np.float32)
    return np.asarray(answer)


def check_classification(gateway: Gateway, name: str, reference, feeds: dict[str, np.ndarray], output: str) -> tuple[bool, str]:
    """tritonclient's classification extension (`class_count`): its top
    class per row must be ONNX Runtime's highest score."""
    types = {i.name: DATATYPES[i.type][0] for i in reference.get_inputs()}
    names = [o.name for o in reference.get_outputs()]
    expected = as_tensor(dict(zip(names, reference.run(None, feeds)))[output])
    client = triton.InferenceServerClient(gateway.url.removeprefix("http://"), network_timeout=120)
    inputs = []
    for input_name, array in feeds.items():
        tensor = triton.InferInput(input_name, list(array.shape), types[input_name])
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    result = client.infer(name, inputs, outputs=[triton.InferRequestedOutput(output, class_count=2)])
    top = result.as_numpy(output)
    indices = [int(row[0].decode().split(":")[1]) for row in top.reshape(len(expected), -1)]
    wanted = [int(i) for i in expected.argmax(axis=1)]
    return indices == wanted, f"top classes {indices} from tritonclient's class_count, ONNX Runtime's argmax {wanted}; first: {top.ravel()[0].decode()}"


def max_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    if actual.shape != expected.shape:
        return float("inf")
    if expected.size == 0:
        return 0.0
    if expected.dtype == np.object_:
        # Strings: equal or not. tritonclient gives bytes, JSON gives text.
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        same = all(text(a) == text(e) for a, e in zip(actual.ravel(), expected.ravel()))
        return 0.0 if same else float("inf")
    scale = np.maximum(np.abs(expected.astype(np.float64)), 1.0)
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)) / scale))


def run_case(
    gateway: Gateway, served: str, reference: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray]
) -> dict[str, tuple[float, str]]:
    """Max relative difference of each way in (JSON, binary) over every output."""
    types = {i.name: DATATYPES[i.type][0] for i in reference.get_inputs()}
    names = [o.name for o in reference.get_outputs()]
    expected = dict(zip(names, map(as_tensor, reference.run(None, feeds))))
    differences = {}
    for way, answer in (
        ("json", lambda: infer_json(gateway.url, served, feeds, types)),
        ("binary", lambda: infer_triton(gateway.url, served, feeds, types, names)),
    ):
        got = answer()
        worst = max(max_difference(np.asarray(got[name]), np.asarray(expected[name])) for name in names)
        differences[way] = worst
    return differences


def describe(session: onnxruntime.InferenceSession) -> str:
    def dim(d) -> str:
        if d is None:
            return "?"
        if isinstance(d, str):
            # An exporter's formula (YOLO's output length) says little here.
            return repr(d) if len(d) <= 24 else "'<formula>'"
        return str(d)

    def dims(shape) -> str:
        return "[" + ", ".join(dim(d) for d in shape) + "]"

    inputs = ", ".join(f"{i.name} {i.type.removeprefix('tensor(').rstrip(')')} {dims(i.shape)}" for i in session.get_inputs())
    outputs = ", ".join(f"{o.name} {o.type.removeprefix('tensor(').rstrip(')')} {dims(o.shape)}" for o in session.get_outputs())
    return f"{inputs} → {outputs}"


# Real inputs: each returns (feeds per request, a check of the answers).


def grace_hopper_face(cache: pathlib.Path, session: onnxruntime.InferenceSession):
    from PIL import Image

    # Letterboxed as Ultralytics does: the portrait padded square with grey.
    photo = Image.open(cache / "assets/grace_hopper.jpg").convert("RGB")
    side = max(photo.size)
    square = Image.new("RGB", (side, side), (114, 114, 114))
    square.paste(photo, ((side - photo.width) // 2, (side - photo.height) // 2))
    image = square.resize((320, 320))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
    face = next(index for index, name in names.items() if name == "FACE_FEMALE")

    def check(answers: list[dict[str, np.ndarray]]) -> tuple[bool, str]:
        scores = answers[0]["output0"][0, 4 + face]
        return bool(scores.max() > 0.5), f"FACE_FEMALE scores {scores.max():.2f} at best (a portrait of a woman)"

    return [{"images": pixels}], check


def rendered_text_line(cache: pathlib.Path, session: onnxruntime.InferenceSession):
    from PIL import Image, ImageDraw, ImageFont

    text = "Hello Sluice 2026"
    font = ImageFont.truetype(str(cache / "assets/DejaVuSans.ttf"), 32)
    image = Image.new("RGB", (320, 48), "white")
    ImageDraw.Draw(image).text((8, 6), text, fill="black", font=font)
    pixels = (np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0 - 0.5) / 0.5
    alphabet = ["blank"] + session.get_modelmeta().custom_metadata_map["character"].splitlines() + [" "]

    def check(answers: list[dict[str, np.ndarray]]) -> tuple[bool, str]:
        best = answers[0][session.get_outputs()[0].name][0].argmax(axis=1)
        read = "".join(alphabet[i] for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1]))
        return read == text, f"read {read!r} from a line that says {text!r}"

    return [{"x": pixels}], check


def silero_speech(cache: pathlib.Path, session: onnxruntime.InferenceSession):
    with wave.open(str(cache / "assets/speech.wav")) as recording:
        assert recording.getframerate() == 16000 and recording.getsampwidth() == 2
        samples = np.frombuffer(recording.readframes(16000 * 4), dtype=np.int16).astype(np.float32) / 32768
    # Silero's own loop: 512 new samples a step after the 64 before them, the
    # state carried from step to step (here from ONNX Runtime's answers, so
    # each request stands alone).
    feeds, state, context = [], np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32)
    sr = np.array(16000, dtype=np.int64)
    for start in range(0, len(samples) - 512, 512):
        chunk = np.concatenate([context, samples[start : start + 512]])[None]
        feed = {"input": chunk, "state": state, "sr": sr}
        feeds.append(feed)
        state = session.run(None, feed)[1]
        context = chunk[0, -64:]

    def check(answers: list[dict[str, np.ndarray]]) -> tuple[bool, str]:
        speech = np.array([float(a["output"].ravel()[0]) for a in answers])
        share = float((speech > 0.5).mean())
        return share > 0.3, f"{share:.0%} of {len(speech)} steps of a speech recording heard as speech"

    return feeds, check


REAL = {"grace_hopper_face": grace_hopper_face, "rendered_text_line": rendered_text_line, "silero_speech": silero_speech}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sluice", default=str(ROOT / "target/debug/sluice"))
    parser.add_argument("--only", help="one model of the manifest")
    parser.add_argument("--table", help="write the corpus table (Markdown) to this file")
    args = parser.parse_args()
    if not os.environ.get("ORT_DYLIB_PATH"):
        sys.exit("set ORT_DYLIB_PATH (scripts/fetch-onnxruntime.sh)")
    manifest = tomllib.loads(MANIFEST.read_text())
    models = [m for m in manifest["model"] if args.only in (None, m["name"])]
    fetched = subprocess.run([sys.executable, str(ROOT / "scripts/fetch-corpus.py")], check=True, capture_output=True, text=True)
    cache = pathlib.Path(fetched.stdout.strip())
    failures = Failures()
    rows: dict[str, dict] = {m["name"]: {"engines": {}, "difference": {}} for m in models}
    with tempfile.TemporaryDirectory(prefix="sluice-corpus-") as scratch:
        gateways = {}
        for engine in ("ort", "tract"):
            repository = pathlib.Path(scratch) / engine
            for model in models:
                version = repository / model["name"] / "1"
                version.mkdir(parents=True)
                (version / "model.onnx").symlink_to(cache / "models" / f"{model['name']}.onnx")
                (repository / model["name"] / "config.toml").write_text(f'backend = "{engine}"\n')
            started = time.monotonic()
            gateways[engine] = Gateway(args.sluice, repository, engine == "ort", pathlib.Path(scratch) / f"{engine}.log")
            print(f"corpus: {engine} gateway loaded {len(models)} models in {time.monotonic() - started:.1f} s", file=sys.stderr)
        try:
            for model in models:
                check_model(model, gateways, cache, failures, rows[model["name"]])
        finally:
            for gateway in gateways.values():
                gateway.stop()
    if args.table:
        write_table(pathlib.Path(args.table), models, rows)
    print(f"corpus: {failures.passed} passed, {len(failures.failed)} failed")
    return 1 if failures.failed else 0


def check_model(model: dict, gateways: dict[str, Gateway], cache: pathlib.Path, failures: Failures, row: dict) -> None:
    name = model["name"]
    path = cache / "models" / f"{name}.onnx"
    try:
        reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        row["signature"] = describe(reference)
    except Exception as error:  # a sequence/map output has no tensor type to describe
        reference, row["signature"] = None, f"(ONNX Runtime's Python API: {error})"
    for engine, gateway in gateways.items():
        expected = model[engine]
        status, index = http("POST", f"{gateway.url}/v2/repository/index", b"{}")
        entry = next((e for e in index if e["name"] == name), None) if status == 200 else None
        if not failures.check(entry is not None, f"{name} on {engine}: missing from the repository index"):
            continue
        if expected.startswith("fails:"):
            check_fails(model, engine, gateway, reference, entry, failures, row)
            continue
        if expected != "served" and not expected.startswith("differs:"):
            words = expected.removeprefix("refused:").strip()
            refused = entry["state"] == "UNAVAILABLE" and words in entry.get("reason", "")
            reason = entry.get("reason", "")
            failures.check(refused, f"{name} on {engine}: expected {expected!r}, got {entry['state']} {reason[:300]}")
            row["engines"][engine] = f"refused: {reason_summary(reason, engine)}"
            continue
        if not failures.check(entry["state"] == "READY", f"{name} on {engine}: expected served, got {entry}"):
            row["engines"][engine] = "FAILED"
            continue
        _, metadata = http("GET", f"{gateway.url}/v2/models/{name}")
        if not failures.check(metadata["parameters"]["backend"] == engine, f"{name} on {engine}: served by {metadata['parameters']}"):
            continue
        warm = "warm" if metadata["parameters"]["warm"] else "cold"
        worst = 0.0
        rng = np.random.default_rng(7)
        dtypes = {i.name: DATATYPES[i.type][1] for i in reference.get_inputs()}
        for number, case in enumerate(model["cases"]):
            feeds = {input_name: values(spec, dtypes[input_name], rng) for input_name, spec in case.items()}
            try:
                differences = run_case(gateway, name, reference, feeds)
            except Exception as error:
                failures.check(False, f"{name} on {engine}, case {number}: {str(error)[:400]}")
                continue
            for way, difference in differences.items():
                worst = max(worst, difference)
                if expected == "served":
                    failures.check(
                        difference <= TOLERANCE[engine],
                        f"{name} on {engine}, case {number} ({way}): differs from ONNX Runtime by {difference:.3g}",
                    )
            if "classification" in model:
                ok, what = check_classification(gateway, name, reference, feeds, model["classification"])
                failures.check(ok, f"{name} on {engine}, case {number}: {what}")
                row["real"] = what
        if "real" in model:
            feeds_list, meaning = REAL[model["real"]](cache, reference)
            types = {i.name: DATATYPES[i.type][0] for i in reference.get_inputs()}
            answers = []
            for feeds in feeds_list:
                got = infer_json(gateway.url, name, feeds, types)
                expected_answer = dict(zip([o.name for o in reference.get_outputs()], map(as_tensor, reference.run(None, feeds))))
                worst = max(worst, *(max_difference(got[k], expected_answer[k]) for k in expected_answer))
                answers.append(got)
            ok, what = meaning(answers)
            failures.check(ok, f"{name} on {engine}, real input: {what}")
            row["real"] = what
        if expected.startswith("differs:"):
            # Known to answer otherwise than ONNX Runtime: a fix must update the manifest.
            failures.check(worst > TOLERANCE[engine], f"{name} on {engine}: expected to differ, agrees to {worst:.3g}")
            row["engines"][engine] = "loads, " + expected.replace("|", "\\|")
        else:
            row["engines"][engine] = f"served ({warm})"
        row["difference"][engine] = worst


def check_fails(model, engine, gateway, reference, entry, failures, row) -> None:
    """A model the engine loads and then fails on every case: each answers
    500 (the engine's error goes to the gateway's log, as for any run)."""
    name = model["name"]
    if not failures.check(entry["state"] == "READY", f"{name} on {engine}: expected it to load, got {entry}"):
        return
    rng = np.random.default_rng(7)
    dtypes = {i.name: DATATYPES[i.type][1] for i in reference.get_inputs()}
    types = {i.name: DATATYPES[i.type][0] for i in reference.get_inputs()}
    for number, case in enumerate(model["cases"]):
        feeds = {input_name: values(spec, dtypes[input_name], rng) for input_name, spec in case.items()}
        try:
            infer_json(gateway.url, name, feeds, types)
            failed = "answered 200"
        except RuntimeError as error:
            failed = str(error)
        failures.check("answered 500" in failed, f"{name} on {engine}, case {number}: expected a 500, {failed[:200]}")
    row["engines"][engine] = "loads, " + model[engine].replace("|", "\\|")


def reason_summary(reason: str, engine: str) -> str:
    """The engine's own refusal, cut short for the table."""
    reason = reason.removeprefix("cannot load model: ")
    part = next((p for p in reason.split("; ") if p.startswith(f"{engine}: ")), reason)
    part = part.removeprefix(f"{engine}: ").removeprefix("cannot load model: ")
    return part.split("\n")[0][:110].replace("|", "\\|")


def write_table(path: pathlib.Path, models: list[dict], rows: dict[str, dict]) -> None:
    lines = [
        "# The public model corpus",
        "",
        "Written by `python3 tests/corpus/run.py --table docs/corpus.md` (see `tests/corpus/manifest.toml`).",
        "Each model is a file inside a package on PyPI; max difference is the largest",
        "`|sluice - onnxruntime| / max(|onnxruntime|, 1)` over every case, through JSON and binary tensors.",
        "",
        "| model | package | what it exercises | signature | ort | tract | max difference (ort / tract) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in models:
        row = rows[model["name"]]
        if "local" in model:
            package = f"(this repository: {model['local'].split('/')[2]})"
        else:
            package = model["archive"].split("-")[0] + " " + model["archive"].split("-")[1].removesuffix(".tar.gz")
        difference = " / ".join(
            f"{row['difference'][e]:.1e}" if e in row["difference"] else "–" for e in ("ort", "tract")
        )
        what = model["what"].replace("|", "\\|")
        if "real" in row:
            what += f"; real input: {row['real']}"
        signature = row.get("signature", "").replace("|", "\\|")
        lines.append(
            f"| {model['name']} | {package} | {what} | `{signature}` | {row['engines'].get('ort', '')} "
            f"| {row['engines'].get('tract', '')} | {difference} |"
        )
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
