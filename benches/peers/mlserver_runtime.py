"""An ONNX Runtime inference runtime for Seldon's MLServer (`mlserver` on PyPI).

MLServer ships no maintained ONNX runtime (there is no `mlserver-onnx` on
PyPI: its runtimes are sklearn, xgboost, lightgbm, mlflow, huggingface, ...),
so this is the tiny custom `MLModel` its docs describe: `load()` opens an ONNX
Runtime session (one intra-op and one inter-op thread) on the model settings'
`parameters.uri`; `predict()` decodes the V2 inputs with MLServer's
`NumpyCodec`, runs the session inline on the event loop (MLServer started with
`parallel_workers: 0`, as mlserver_start.sh writes its settings) and encodes
the outputs with `NumpyCodec`. MLServer parses and serialises the JSON itself.

Started by `mlserver_start.sh REPOSITORY_DIR PORT`, which puts this directory
on PYTHONPATH and names `mlserver_runtime.OnnxRuntime` as each model's
implementation.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        uri = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds: dict[str, np.ndarray] = {}
        for request_input in payload.inputs:
            if request_input.name not in self._input_names:
                raise InferenceError(f"unexpected input '{request_input.name}'")
            try:
                feeds[request_input.name] = NumpyCodec.decode_input(request_input)
            except (ValueError, TypeError) as err:
                raise InferenceError(f"input '{request_input.name}': {err}") from None
        missing = self._input_names.difference(feeds)
        if missing:
            raise InferenceError(f"missing inputs {sorted(missing)}")
        names = self._output_names
        if payload.outputs:
            names = [output.name for output in payload.outputs]
            unknown = set(names).difference(self._output_names)
            if unknown:
                raise InferenceError(f"unknown outputs {sorted(unknown)}")
        try:
            results = self._session.run(names, feeds)
        except (InvalidArgument, ValueError) as err:
            raise InferenceError(str(err)) from None
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(names, results)],
        )
