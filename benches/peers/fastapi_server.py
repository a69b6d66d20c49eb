"""The baseline many teams write: FastAPI + uvicorn + onnxruntime serving the
Open Inference Protocol's JSON infer endpoint for every model of a repository.

    MODEL_REPOSITORY=DIR uvicorn fastapi_server:app --port P

Written as such a team would: pydantic models for the body, numpy arrays for
the tensors, one ONNX Runtime session per model with one intra-op thread (as
Sluice's benchmark runs), `async def` with the run inline (on one core a thread
pool hop would only add cost). JSON only: no binary tensor extension.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
WIRE = {np.dtype(dtype): name for name, dtype in DTYPES.items()}


class InputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = None


def load(root: pathlib.Path) -> dict[str, ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {}
    for model_dir in sorted(root.iterdir()):
        versions = sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if versions:
            sessions[model_dir.name] = ort.InferenceSession(
                str(versions[-1] / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
    return sessions


SESSIONS = load(pathlib.Path(os.environ["MODEL_REPOSITORY"]))
app = FastAPI()


@app.get("/v2/health/ready")
async def ready() -> dict:
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: InferRequest) -> dict:
    session = SESSIONS.get(name)
    if session is None:
        raise HTTPException(status_code=404, detail=f"unknown model '{name}'")
    try:
        feeds = {
            tensor.name: np.asarray(tensor.data, dtype=DTYPES[tensor.datatype]).reshape(tensor.shape)
            for tensor in request.inputs
        }
    except (KeyError, ValueError) as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    wanted = [output.name for output in request.outputs] if request.outputs else None
    names = wanted or [output.name for output in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        "model_name": name,
        "model_version": "1",
        "id": request.id,
        "outputs": [
            {"name": output, "datatype": WIRE[value.dtype], "shape": list(value.shape), "data": value.ravel().tolist()}
            for output, value in zip(names, results)
        ],
    }
