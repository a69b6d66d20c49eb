#!/usr/bin/env python3
"""The shipped binary's size and its start-to-ready time.

    bash scripts/build-release.sh && python3 benches/binary.py [--runs N]

Sizes: target/release/sluice as cargo leaves it (with line tables), the
stripped dist/sluice that ships, and dist/sluice.debug kept aside.
Start-to-ready: from exec to the first 200 of /v2/health/ready (polled every
2 ms), of `dist/sluice serve --demo` on tract (no ONNX Runtime variable),
N times each in a new data directory (the demo registers, approves and
deploys its models through the registry's API) and restarting on one that
is already set up; the median, with the fastest and the slowest.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_to_ready(binary, data):
    predict, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    env["RUST_LOG"] = "error"
    started = time.perf_counter()
    process = subprocess.Popen(
        [binary, "serve", "--demo", "--listen", f"127.0.0.1:{predict}",
         "--admin-listen", f"127.0.0.1:{admin}", "--data-dir", data],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{predict}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            if process.poll() is not None:
                raise SystemExit(f"sluice exited with {process.returncode}")
            if time.perf_counter() - started > 60:
                raise SystemExit("not ready within 60 s")
            time.sleep(0.002)
    finally:
        process.terminate()
        process.wait(timeout=30)


def mib(path):
    return os.path.getsize(path) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    unstripped = os.path.join(ROOT, "target/release/sluice")
    shipped = os.path.join(ROOT, "dist/sluice")
    debug = os.path.join(ROOT, "dist/sluice.debug")
    print("| file | MiB |\n| --- | ---: |")
    for path in (unstripped, shipped, debug):
        print(f"| `{os.path.relpath(path, ROOT)}` | {mib(path):.1f} |")
    fresh, restart = [], []
    for _ in range(args.runs):
        data = tempfile.mkdtemp(prefix="sluice-startup-")
        try:
            fresh.append(start_to_ready(shipped, data))
            restart.append(start_to_ready(shipped, data))
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print("\n| `dist/sluice serve --demo`, start to ready | median ms | fastest | slowest |\n| --- | ---: | ---: | ---: |")
    for name, times in (("new data directory", fresh), ("restart on its data", restart)):
        print(f"| {name} | {statistics.median(times):.0f} | {min(times):.0f} | {max(times):.0f} |")
    print(f"\n{args.runs} runs each, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
