"""Checks a server's gRPC answers (`inference.GRPCInferenceService/ModelInfer`,
called by tritonclient.grpc with raw tensors, as the benchmark's load
generator sends them) against ONNX Runtime's, before benches/grpc.sh
measures it.

    python check_grpc.py HOST:PORT WORK_DIR MODEL...
"""

import json
import pathlib
import sys

import numpy as np
import onnxruntime
import tritonclient.grpc as triton


def output(result, name):
    """An output from raw_output_contents (Triton's and Sluice's answers) or
    from the typed contents (KServe's Python server answers in those)."""
    response = result.get_response()
    if response.raw_output_contents:
        return result.as_numpy(name)
    for tensor in response.outputs:
        if tensor.name == name:
            field = {"FP32": "fp32_contents", "INT64": "int64_contents"}[tensor.datatype]
            return np.array(getattr(tensor.contents, field)).reshape(list(tensor.shape))
    return None


def main():
    address, work = sys.argv[1], pathlib.Path(sys.argv[2])
    client = triton.InferenceServerClient(address)
    for model in sys.argv[3:]:
        body = json.loads((work / "requests" / f"{model}.json").read_text())
        feeds, inputs = {}, []
        for tensor in body["inputs"]:
            values = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            feeds[tensor["name"]] = values
            wire = triton.InferInput(tensor["name"], list(values.shape), "FP32")
            wire.set_data_from_numpy(values)
            inputs.append(wire)
        session = onnxruntime.InferenceSession(str(work / "repository" / model / "1" / "model.onnx"))
        names = [output.name for output in session.get_outputs()]
        expected = dict(zip(names, session.run(names, feeds)))
        result = client.infer(model, inputs)
        for name, values in expected.items():
            got = output(result, name)
            if got is None or not np.allclose(got.reshape(values.shape), values, rtol=1e-4, atol=1e-5):
                sys.exit(f"{address} {model}/{name}: the gRPC answer differs from ONNX Runtime's")
        print(f"{address} {model}: gRPC answers match ONNX Runtime")


if __name__ == "__main__":
    main()
