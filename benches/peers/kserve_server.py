"""KServe's Python ModelServer (`kserve` on PyPI) serving every model of a
Triton-style repository (`DIR/{model}/{version}/model.onnx`, newest version)
with ONNX Runtime, over the Open Inference Protocol (V2) REST endpoints
`POST /v2/models/{name}/infer` and `GET /v2/health/ready`.

Needs its own venv (kserve pins protobuf<7, unlike the FastAPI venv):
`pip install -r requirements-kserve.txt`. One worker on one core, as
benches/peers.sh runs it (cwd benches/peers):

    MODEL_REPOSITORY=DIR HTTP_PORT=P taskset -c 0 python kserve_server.py

- HTTP_PORT (or `--http_port P`): the REST port (KServe binds 0.0.0.0).
- GRPC_PORT: when set, KServe's gRPC server listens there; unset, gRPC is off.
- KSERVE_WORKERS: uvicorn worker processes (default 1).

As KServe's docs write a custom predictor: one `kserve.Model` per model, whose
`load()` opens an ONNX Runtime session with one intra-op and one inter-op
thread and whose synchronous `predict()` (KServe calls it inline on the event
loop) takes the decoded V2 `InferRequest` and returns an `InferResponse`.
KServe parses the body, builds the numpy inputs (`InferInput.as_numpy`) and
serialises the answer (orjson) itself. Per-request latency and timing logs
are turned off, as the other servers of the benchmark run with error logs only.
"""

from __future__ import annotations

import logging
import os
import warnings
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: pathlib.Path, version: str) -> None:
        super().__init__(name)
        self.path = path
        self.version = version
        self.session: ort.InferenceSession | None = None
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        feeds = {}
        for tensor in payload.inputs:
            if tensor.name not in self.input_names:
                raise InvalidInput(f"unexpected input '{tensor.name}'")
            try:
                feeds[tensor.name] = tensor.as_numpy()
            except (ValueError, TypeError) as err:
                raise InvalidInput(f"input '{tensor.name}': {err}") from None
        missing = self.input_names.difference(feeds)
        if missing:
            raise InvalidInput(f"missing inputs {sorted(missing)}")
        names = self.output_names
        if payload.request_outputs:
            names = [output.name for output in payload.request_outputs]
            unknown = set(names).difference(self.output_names)
            if unknown:
                raise InvalidInput(f"unknown outputs {sorted(unknown)}")
        try:
            results = self.session.run(names, feeds)
        except (InvalidArgument, ValueError) as err:
            raise InvalidInput(str(err)) from None
        outputs = []
        for name, value in zip(names, results):
            output = InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype))
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(
            # KServe's REST response model requires an id: echo it, or mint one as its examples do.
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            model_version=self.version,
            infer_outputs=outputs,
        )


def models_of(root: pathlib.Path) -> list[OnnxModel]:
    models = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if versions and (versions[-1] / "model.onnx").is_file():
            models.append(OnnxModel(model_dir.name, versions[-1] / "model.onnx", versions[-1].name))
    return models


def main() -> None:
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # kserve 0.21 on fastapi 0.165
    models = models_of(pathlib.Path(os.environ["MODEL_REPOSITORY"]))
    http_port = int(os.environ.get("HTTP_PORT", kserve.model_server.args.http_port))
    grpc_port = os.environ.get("GRPC_PORT")
    server = kserve.ModelServer(
        http_port=http_port,
        grpc_port=int(grpc_port) if grpc_port else 0,
        enable_grpc=bool(grpc_port),
        workers=int(os.environ.get("KSERVE_WORKERS", "1")),
        enable_latency_logging=False,
        event_loop="uvloop",
    )
    # KServe configured logging at INFO (a timing line per request): errors only.
    for logger in ["kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"]:
        logging.getLogger(logger).setLevel(logging.ERROR)
    server.start(models)


if __name__ == "__main__":
    sys.exit(main())
