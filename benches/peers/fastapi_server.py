"""The strong Python baseline: FastAPI + uvicorn + onnxruntime serving the Open
Inference Protocol's (KServe V2) JSON infer endpoint for every model of a
Triton-style repository (`DIR/{model}/{version}/model.onnx`, newest version).

One worker on one core, as benches/peers.sh runs it (cwd benches/peers):

    MODEL_REPOSITORY=DIR taskset -c 0 uvicorn fastapi_server:app --host 127.0.0.1 --port P \\
        --loop uvloop --http httptools --log-level error --no-access-log

One worker per core (each worker is a process with its own sessions; with
PIN_WORKERS=1 each worker pins itself to a distinct core of the taskset):

    MODEL_REPOSITORY=DIR PIN_WORKERS=1 taskset -c 0-3 uvicorn fastapi_server:app --workers 4 \\
        --host 127.0.0.1 --port P --loop uvloop --http httptools --log-level error --no-access-log

Written as a careful engineer would: no pydantic body model (FastAPI would
parse the body with the stdlib json, ~6x slower than orjson on a 784-float
list, then validate every element); the raw body parsed with orjson; tensors
built with `np.asarray(list, dtype)` straight from the parsed list (measured
on the mlp body, 784 floats: orjson.loads ~20 us + np.asarray ~20 us;
np.array and np.fromiter the same within noise, a float64 array then astype
slower; stdlib json.loads ~6x slower; slicing the list's text out and
np.fromstring(sep=",") ~5x slower; np.frombuffer only applies to binary
tensor data, which this JSON-only server does not take); the answer
serialised by orjson (numpy arrays natively) into a raw Response; the infer
route added as a plain Starlette route (no FastAPI dependency solving); start-up
objects frozen out of the cyclic GC (gc.freeze); one ONNX Runtime session per
model with one intra-op and one inter-op thread; `async def` with the run
inline (on one core a thread-pool hop only adds cost).
"""

from __future__ import annotations

import fcntl
import gc
import os
import pathlib
import tempfile

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
WIRE = {np.dtype(dtype): name for name, dtype in DTYPES.items()}
JSON = "application/json"


class Model:
    __slots__ = ("session", "inputs", "outputs", "version")

    def __init__(self, path: pathlib.Path, version: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.version = version


def load(root: pathlib.Path) -> dict[str, Model]:
    models = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if versions and (versions[-1] / "model.onnx").is_file():
            models[model_dir.name] = Model(versions[-1] / "model.onnx", versions[-1].name)
    return models


def pin_worker() -> None:
    """With PIN_WORKERS=1, claim one core of the allowed set (an flock per core,
    namespaced by the supervisor's pid) and pin this worker process to it."""
    if os.environ.get("PIN_WORKERS") != "1":
        return
    for cpu in sorted(os.sched_getaffinity(0)):
        path = os.path.join(tempfile.gettempdir(), f"fastapi-peer-{os.getppid()}-cpu{cpu}.lock")
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        globals()["_PIN_FD"] = fd  # held for the process's life
        os.sched_setaffinity(0, {cpu})
        return


pin_worker()
MODELS = load(pathlib.Path(os.environ["MODEL_REPOSITORY"]))
READY = orjson.dumps({"ready": True})
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
gc.freeze()  # the start-up objects (sessions, app) leave the collector's scans


class BadRequest(Exception):
    pass


def error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type=JSON)


@app.get("/v2/health/ready")
async def ready() -> Response:
    return Response(READY, media_type=JSON)


@app.get("/v2/health/live")
async def live() -> Response:
    return Response(READY.replace(b"ready", b"live"), media_type=JSON)


def feeds_of(model: Model, body: object) -> dict[str, np.ndarray]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest("request must be an object with a non-empty 'inputs' list")
    feeds = {}
    for tensor in body["inputs"]:
        try:
            name, datatype, shape, data = tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]
        except (KeyError, TypeError) as err:
            raise BadRequest(f"input tensor missing field {err}") from None
        if name not in model.inputs:
            raise BadRequest(f"unexpected input '{name}'")
        dtype = DTYPES.get(datatype)
        if dtype is None:
            raise BadRequest(f"unsupported datatype '{datatype}'")
        try:
            feeds[name] = np.asarray(data, dtype=dtype).reshape(shape)
        except (ValueError, TypeError, OverflowError) as err:
            raise BadRequest(f"input '{name}': {err}") from None
    missing = model.inputs.difference(feeds)
    if missing:
        raise BadRequest(f"missing inputs {sorted(missing)}")
    return feeds


async def infer(request: Request) -> Response:
    name = request.path_params["name"]
    model = MODELS.get(name)
    if model is None:
        return error(404, f"unknown model '{name}'")
    try:
        body = orjson.loads(await request.body())
        feeds = feeds_of(model, body)
        names = model.outputs
        requested = body.get("outputs")
        if requested:
            names = [output["name"] for output in requested]
            unknown = set(names).difference(model.outputs)
            if unknown:
                raise BadRequest(f"unknown outputs {sorted(unknown)}")
    except orjson.JSONDecodeError as err:
        return error(400, f"invalid JSON: {err}")
    except (BadRequest, KeyError, TypeError) as err:
        return error(400, str(err))
    try:
        results = model.session.run(names, feeds)
    except (InvalidArgument, ValueError) as err:
        return error(400, str(err))
    except Exception as err:  # noqa: BLE001 - the runtime failed, not the client
        return error(500, str(err))
    response = {
        "model_name": name,
        "model_version": model.version,
        "outputs": [
            {"name": output, "datatype": WIRE[value.dtype], "shape": value.shape, "data": value.ravel()}
            for output, value in zip(names, results)
        ],
    }
    if "id" in body:
        response["id"] = body["id"]
    return Response(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


# A plain Starlette route on the FastAPI app: the handler takes the Request and
# does its own parsing, so FastAPI's per-request dependency solving (~65 us of
# CPU a request here, ~20%) buys nothing.
app.add_route("/v2/models/{name}/infer", infer, methods=["POST"])
