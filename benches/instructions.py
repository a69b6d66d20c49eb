#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: repeatable
where wall-clock throughput is not (these machines share their cores, and
`benches/ab.sh`'s runs can swing by a third from one to the next).

Each binary serves one example model from `models/repository` (tract, one
compute thread, no ONNX Runtime) under callgrind; a keep-alive client sends
SHORT requests, then again LONG requests in a new process; the difference
divided by LONG - SHORT is what one more request costs, start-up and
shutdown cancelled out.

    python3 benches/instructions.py BEFORE AFTER [--model credit_risk] [--short 200] [--long 1200]

Needs valgrind (on every machine kind here).
"""

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count(binary, model, requests, scratch):
    repo = os.path.join(scratch, "repository")
    if not os.path.exists(repo):
        os.makedirs(repo)
        os.symlink(os.path.join(ROOT, "models/repository", model), os.path.join(repo, model))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = os.path.join(scratch, f"callgrind-{requests}.out")
    env = {key: value for key, value in os.environ.items() if key != "ORT_DYLIB_PATH"}
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
         "--model-repository", repo, "--listen", f"127.0.0.1:{port}", "--compute-threads", "1", "--log", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    body = open(os.path.join(ROOT, "models/examples", f"{model}.json"), "rb").read()
    deadline = time.time() + 300
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            probe.request("GET", f"/v2/models/{model}/ready")
            answer = probe.getresponse()
            answer.read()
            if answer.status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            server.kill()
            sys.exit(f"{binary} was not ready in 5 minutes under valgrind")
        time.sleep(0.5)
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(requests):
        client.request("POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"})
        answer = client.getresponse()
        answer.read()
        if answer.status != 200:
            sys.exit(f"{binary} answered {answer.status}")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=300)
    with open(out) as profile:
        for line in profile:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    sys.exit(f"no total in {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--model", default="credit_risk")
    parser.add_argument("--short", type=int, default=200)
    parser.add_argument("--long", type=int, default=1200)
    args = parser.parse_args()
    for binary in args.binaries:
        with tempfile.TemporaryDirectory() as scratch:
            short = count(binary, args.model, args.short, scratch)
            long = count(binary, args.model, args.long, scratch)
        per_request = (long - short) / (args.long - args.short)
        print(f"{binary}\t{args.model}\t{per_request:,.0f} instructions per request")


if __name__ == "__main__":
    main()
