"""Sluice's gRPC service driven by clients nobody on the team wrote:
tritonclient.grpc and KServe's InferenceGRPCClient, against a running
gateway that serves models/repository (credit_risk, digits). Run by the
end-to-end test `grpc::clients`; every check prints what it compared, and
the first failure exits non-zero with the reason.

    python clients.py --client tritonclient|kserve --address 127.0.0.1:PORT [--tls-ca CA.pem] --repository models/repository
"""

import argparse
import asyncio
import json
import pathlib
import queue
import ssl
import sys

import numpy as np
import onnxruntime

# tritonclient's modules, imported by main() when it is the client.
triton = triton_http = None

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECKS = []


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS.append(what)


def example(name):
    """The example request of `name` as {input: array}."""
    body = json.loads((ROOT / "models/examples" / f"{name}.json").read_text())
    return {
        tensor["name"]: np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        for tensor in body["inputs"]
    }


def reference(repository, name, feeds):
    session = onnxruntime.InferenceSession(str(repository / name / "1" / "model.onnx"))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def triton_inputs(feeds):
    inputs = []
    for name, values in feeds.items():
        tensor = triton.InferInput(name, list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def expect_error(call, code, contains, what):
    from tritonclient.utils import InferenceServerException
    try:
        call()
    except InferenceServerException as err:
        check(err.status() == f"StatusCode.{code}", f"{what}: {code} (got {err.status()})")
        check(contains in err.message(), f"{what}: message says {contains!r} (got {err.message()!r})")
        return
    check(False, f"{what}: expected {code}, got an answer")


def tritonclient_checks(args, repository, client):
    from tritonclient.utils import InferenceServerException
    check(client.is_server_live(), "ServerLive")
    check(client.is_server_ready(), "ServerReady")
    check(client.is_model_ready("credit_risk"), "ModelReady of a served model")
    check(client.is_model_ready("credit_risk", "1"), "ModelReady of a served version")
    check(not client.is_model_ready("nope"), "ModelReady of an unknown model is false, as Triton's")
    metadata = client.get_server_metadata()
    check(metadata.name == "sluice" and "binary_tensor_data" in metadata.extensions, "ServerMetadata")
    model = client.get_model_metadata("digits")
    check(model.name == "digits" and model.versions == ["1"], "ModelMetadata: name and versions")
    check([(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("pixels", "FP32", [-1, 64])],
          "ModelMetadata: inputs")
    config = client.get_model_config("digits").config
    check(config.name == "digits" and config.platform == "onnxruntime_onnx", "ModelConfig: platform")
    check([(t.name, list(t.dims)) for t in config.input] == [("pixels", [-1, 64])], "ModelConfig: dims")
    index = client.get_model_repository_index()
    check([(m.name, m.version, m.state) for m in index.models]
          == [("credit_risk", "1", "READY"), ("digits", "1", "READY")], "RepositoryIndex")
    expect_error(lambda: client.get_model_metadata("nope"), "NOT_FOUND", "unknown model 'nope'",
                 "ModelMetadata of an unknown model")

    # The example models, in raw_input_contents (tritonclient's binary
    # form), against ONNX Runtime's own answers.
    http = http_client(args)
    for name in ["credit_risk", "digits"]:
        feeds = example(name)
        expected = reference(repository, name, feeds)
        result = client.infer(name, triton_inputs(feeds), request_id=f"{name}-1")
        check(result.get_response().id == f"{name}-1", f"{name}: the request id is echoed")
        check(result.get_response().model_version == "1", f"{name}: model_version answered")
        for output, values in expected.items():
            got = result.as_numpy(output)
            check(got is not None and got.shape == values.shape, f"{name}/{output}: shape {values.shape}")
            check(np.allclose(got, values, rtol=1e-4, atol=1e-5), f"{name}/{output}: values match ONNX Runtime")
            over_http = http.infer(name, http_inputs(feeds)).as_numpy(output)
            check(np.array_equal(got, over_http), f"{name}/{output}: gRPC and HTTP on one port answer the same")
    # Requested outputs and the classification extension.
    feeds = example("digits")
    result = client.infer("digits", triton_inputs(feeds),
                          outputs=[triton.InferRequestedOutput("probabilities", class_count=2)])
    classes = result.as_numpy("probabilities")
    check(classes.shape == (1, 2) and classes.dtype == np.object_, "classification: top 2 as BYTES")
    best = int(classes[0][0].decode().split(":")[1])
    check(best == int(np.argmax(reference(repository, "digits", feeds)["probabilities"])),
          "classification: the best class is ONNX Runtime's")
    # gzip both ways, and a pinned version.
    for algorithm in ["gzip", "deflate"]:
        result = client.infer("digits", triton_inputs(feeds), compression_algorithm=algorithm, model_version="1")
        check(result.as_numpy("probabilities").shape == (1, 10), f"{algorithm} and a pinned version")

    # Errors: the codes, with the messages HTTP gives.
    inputs = triton_inputs(example("credit_risk"))
    expect_error(lambda: client.infer("credit_risk", inputs[:2]), "INVALID_ARGUMENT", "missing input 'debt_ratio'",
                 "a missing input")
    wrong = triton.InferInput("pixels", [1, 63], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    expect_error(lambda: client.infer("digits", [wrong]), "INVALID_ARGUMENT", "pixels", "a wrong shape")
    as_int = triton.InferInput("pixels", [1, 64], "INT32")
    as_int.set_data_from_numpy(np.zeros((1, 64), dtype=np.int32))
    expect_error(lambda: client.infer("digits", [as_int]), "INVALID_ARGUMENT", "FP32", "a wrong datatype")
    expect_error(lambda: client.infer("nope", inputs), "NOT_FOUND", "unknown model 'nope'", "an unknown model")
    expect_error(lambda: client.infer("credit_risk", inputs, model_version="7"), "NOT_FOUND",
                 "unknown version 7", "an unknown version")
    expect_error(lambda: client.load_model("digits"), "UNIMPLEMENTED", "does not load", "RepositoryModelLoad")
    expect_error(lambda: client.get_inference_statistics("digits"), "UNIMPLEMENTED", "/metrics",
                 "ModelStatistics")
    status = client.get_system_shared_memory_status()
    check(len(status.regions) == 0, "SystemSharedMemoryStatus: no region")

    # ModelStreamInfer: in order, each tagged by its id; a failed request
    # answered on the stream, which goes on.
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for index in range(24):
        client.async_stream_infer("digits", triton_inputs(feeds), request_id=str(index))
    client.async_stream_infer("digits", [wrong], request_id="bad")
    client.async_stream_infer("digits", triton_inputs(feeds), request_id="after")
    seen = []
    for _ in range(26):
        result, error = answers.get(timeout=30)
        seen.append(result.get_response().id if error is None else ("error", error.message()))
    client.stop_stream()
    check(seen[:24] == [str(index) for index in range(24)], "stream: answers in order, tagged by id")
    check(seen[24][0] == "error" and "pixels" in seen[24][1], "stream: a bad request answered with its error")
    check(seen[25] == "after", "stream: it goes on after an error")


def http_inputs(feeds):
    inputs = []
    for name, values in feeds.items():
        tensor = triton_http.InferInput(name, list(values.shape), "FP32")
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    return inputs


async def kserve_checks(args, repository):
    from kserve import InferenceGRPCClient, InferInput, InferRequest
    from grpc.aio import AioRpcError
    import grpc

    kwargs = {}
    if args.tls_ca:
        kwargs = {"use_ssl": True, "root_certificates": args.tls_ca}
    client = InferenceGRPCClient(args.address, **kwargs)
    check(await client.is_server_live(), "KServe: ServerLive")
    check(await client.is_server_ready(), "KServe: ServerReady")
    check(await client.is_model_ready("digits"), "KServe: ModelReady")
    feeds = example("credit_risk")
    expected = reference(repository, "credit_risk", feeds)
    for binary in [True, False]:
        inputs = []
        for name, values in feeds.items():
            tensor = InferInput(name, list(values.shape), "FP32")
            tensor.set_data_from_numpy(values, binary_data=binary)
            inputs.append(tensor)
        answer = await client.infer(InferRequest(model_name="credit_risk", infer_inputs=inputs, request_id="k"))
        form = "raw" if binary else "typed contents"
        check(answer.id == "k", f"KServe ({form}): the id is echoed")
        outputs = {output.name: output.as_numpy() for output in answer.outputs}
        for name, values in expected.items():
            check(np.allclose(outputs[name].reshape(values.shape), values, rtol=1e-4, atol=1e-5),
                  f"KServe ({form}): {name} matches ONNX Runtime")
    try:
        await client.infer(InferRequest(model_name="credit_risk", infer_inputs=inputs[:1]))
        check(False, "KServe: a missing input is refused")
    except AioRpcError as err:
        check(err.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing input" in err.details(),
              "KServe: a missing input is INVALID_ARGUMENT, with HTTP's message")
    await client.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True, help="host:port of HTTP and gRPC both")
    parser.add_argument("--tls-ca", help="the CA's PEM file: speak TLS")
    parser.add_argument("--repository", required=True)
    # One client per process: both register the `inference` protos in
    # protobuf's default pool, and the second import fails.
    parser.add_argument("--client", choices=["tritonclient", "kserve"], required=True)
    args = parser.parse_args()
    repository = pathlib.Path(args.repository)
    if args.client == "tritonclient":
        global triton, triton_http
        import tritonclient.grpc as triton
        import tritonclient.http as triton_http
        tritonclient_checks(args, repository, grpc_client(args))
    else:
        asyncio.run(kserve_checks(args, repository))
    print(f"ok: {len(CHECKS)} checks", file=sys.stderr)


def grpc_client(args):
    if not args.tls_ca:
        return triton.InferenceServerClient(args.address)
    return triton.InferenceServerClient(args.address, ssl=True, root_certificates=args.tls_ca)


def http_client(args):
    if not args.tls_ca:
        return triton_http.InferenceServerClient(args.address)
    return triton_http.InferenceServerClient(
        args.address, ssl=True, ssl_context_factory=lambda: ssl.create_default_context(cafile=args.tls_ca))


if __name__ == "__main__":
    main()
