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

`--repository DIR --body FILE` serve another repository's model (the
benchmark's, from `benches/peers/models.py`); `--ort` lets ONNX Runtime run it
(from `ORT_DYLIB_PATH`, one session); `--parts` also splits each request's
instructions over the parts of the request path (`PARTS` below), from
callgrind's inclusive counts (user space only: the kernel's share of a
request is not counted here). `--inline-below-us N` is passed to the server:
count with models run inline (N above the model's run), since under
callgrind's one-thread-at-a-time scheduling the compute pool's hand-off
spins and waits cost instructions they do not cost on a real core. (Bodies
over 16 KiB, the CNN's, run on the pool whatever N; binaries older than
6d86698 lack the flag.)

Needs valgrind (on every machine kind here).
"""

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The parts of a request, each the functions whose inclusive instructions
# it counts (a frame's name contains the text). They nest (the engine's run
# is inside the inference step): read each against the total.
PARTS = [
    ("whole request (hyper connection task)", ["serve_connection::{{closure}}"]),
    ("  HTTP/1 head parse", ["Http1Transaction>::parse"]),
    ("  HTTP/1 head encode", ["Http1Transaction>::encode"]),
    ("  body read", ["server::body::collect"]),
    ("  routing (one ArcSwap load)", ["routing::RoutingTable::route"]),
    ("  JSON decode", ["protocol::request::decode"]),
    ("  engine run, all of it", ["backend::Session>::try_run", "backend::Session>::run"]),
    ("    input to engine tensors", ["backend::ort::to_ort", "backend::tract::to_tract"]),
    ("    ONNX Runtime's Run", ["Session>::run_inner"]),
    ("    outputs from engine tensors", ["backend::ort::from_ort"]),
    ("  JSON encode", ["protocol::response::encode"]),
    ("  accounting (stats, drift, metrics)", ["server::accounting::Accounting::record"]),
    ("  syscalls: write", ["writev"]),
    ("  syscalls: read", ["__libc_recv", "recvfrom"]),
    ("  malloc and free", ["malloc", "free"]),
]


def inclusive(out):
    """Inclusive instructions per function name, from callgrind_annotate."""
    listing = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
        check=True, capture_output=True, text=True).stdout
    totals = {}
    for line in listing.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) < 2 or not parts[0].replace(",", "").isdigit():
            continue
        name = parts[-1]
        totals[name] = totals.get(name, 0) + int(parts[0].replace(",", ""))
    return totals


def count(binary, model, requests, scratch, source, body_path, ort, inline_below_us, want_parts=False):
    repo = os.path.join(scratch, "repository")
    if not os.path.exists(repo):
        os.makedirs(repo)
        os.symlink(os.path.join(source, model), os.path.join(repo, model))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = os.path.join(scratch, f"callgrind-{requests}.out")
    env = {key: value for key, value in os.environ.items() if ort or key != "ORT_DYLIB_PATH"}
    engine = ["--ort-sessions", "1"] if ort else []
    engine += ["--inline-below-us", str(inline_below_us)]
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
         "--model-repository", repo, "--listen", f"127.0.0.1:{port}", "--compute-threads", "1", "--log", "warn",
         *engine],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    body = open(body_path, "rb").read()
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
                return int(line.split()[1]), (inclusive(out) if want_parts else {})
    sys.exit(f"no total in {out}")


def part_counts(totals):
    """Each part's instructions: the sum over the frames it names, taking
    for each pattern the largest matching frame (nested frames of one name
    would count twice)."""
    counts = []
    for label, patterns in PARTS:
        count = 0
        for pattern in patterns:
            matching = [value for name, value in totals.items() if pattern in name]
            count += max(matching, default=0)
        counts.append((label, count))
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--model", default="credit_risk")
    parser.add_argument("--short", type=int, default=200)
    parser.add_argument("--long", type=int, default=1200)
    parser.add_argument("--repository", default=os.path.join(ROOT, "models/repository"))
    parser.add_argument("--body", help="the request body (default models/examples/MODEL.json)")
    parser.add_argument("--ort", action="store_true", help="serve with ONNX Runtime (ORT_DYLIB_PATH)")
    parser.add_argument("--parts", action="store_true", help="split each request over its parts")
    parser.add_argument("--inline-below-us", type=int, default=1_000_000,
                        help="the server's --inline-below-us (default: every model inline)")
    parser.add_argument("--keep", help="copy the LONG run's callgrind profile here, for callgrind_annotate")
    args = parser.parse_args()
    body = args.body or os.path.join(ROOT, "models/examples", f"{args.model}.json")
    if args.ort and not os.environ.get("ORT_DYLIB_PATH"):
        sys.exit("--ort needs ORT_DYLIB_PATH (scripts/fetch-onnxruntime.sh prints it)")
    extra = args.long - args.short
    for binary in args.binaries:
        with tempfile.TemporaryDirectory() as scratch:
            short, short_parts = count(binary, args.model, args.short, scratch, args.repository, body, args.ort,
                                       args.inline_below_us, args.parts)
            long, long_parts = count(binary, args.model, args.long, scratch, args.repository, body, args.ort,
                                     args.inline_below_us, args.parts)
            if args.keep:
                shutil.copy(os.path.join(scratch, f"callgrind-{args.long}.out"), args.keep)
        per_request = (long - short) / extra
        print(f"{binary}\t{args.model}\t{per_request:,.0f} instructions per request")
        if args.parts:
            for (label, before), (_, after) in zip(part_counts(short_parts), part_counts(long_parts)):
                print(f"  {label:<42} {(after - before) / extra:>10,.0f}")


if __name__ == "__main__":
    main()
