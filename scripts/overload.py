#!/usr/bin/env python3
"""Overload: offer a gateway twice what it can serve, for minutes.

Starts `sluice serve` on the example repository with a small admission
bound, measures what it serves at capacity (closed model, exactly
`--max-in-flight` connections), then sends an open-model schedule at
`--factor` times that throughput for `--minutes`, sampling the gateway's
resident memory every `--sample-s` seconds. The promise checked:

- memory: the largest RSS under overload stays within twice the largest
  RSS at capacity (the bodies of refused requests are never kept), and
  does not grow: the last third of the overload peaks within 4 MiB of the
  first third;
- latency: the p99 of admitted requests under overload stays within
  `--p99-factor` (3) times the p99 at capacity plus 5 ms (admission holds
  the queue at the same depth, so the excess is refused, not queued; the
  factor leaves room for the refusals and the generator, which take cores
  from the model here), and does not grow: the median of the per-second
  p99s in the last third is within 1.5 times that of the first, plus 2 ms;
- refusals: the excess is answered 503 (fast), and nothing else fails;
- the generator offered the scheduled load (at least 95% of it sent).

On a 2-core machine the generator shares the cores with the gateway, and
past about twice the capacity it can no longer send on schedule.

Then the floods of issue 20, for `--flood-minutes`, on `sluice serve
--demo` (its embedded registry joins feedback) with 1,024 descriptors:
answers amplified by naming one output 20,000 times, 8 MiB request ids,
4 MiB bodies of labels for request ids nobody logged (256 MiB an hour
taken, the rest refused 429), and twice as many
idle connections as a listener may hold, all at once, while a probe asks
credit_risk for a prediction ten times a second. The promise checked:
every flood request is refused (or, for labels, stored within the hourly
budget), every probe is answered 200 within a second, the RSS of the last
third of the floods peaks within 16 MiB of the first third's, and the
descriptors stay under the limit.

Not in CI (it runs for minutes). Release builds first:

    cargo build --release -p sluice -p sluice-loadtest
    python3 scripts/overload.py --minutes 3
    python3 scripts/overload.py --minutes 0 --flood-minutes 2   # the floods alone

It writes `overload.json` and `overload.csv` (the RSS samples) to `--out`
(`floods.json` and `floods.csv` for the floods) and prints a summary;
exit 0 when every promise held.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Sampler(threading.Thread):
    """RSS of one process every `period` seconds, tagged with a phase."""

    def __init__(self, pid: int, period: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.phase = "idle"
        self.samples: list[tuple[float, str, float]] = []
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.t0, self.phase, rss_mib(self.pid)))
            self.stopped.wait(self.period)

    def peak(self, phase: str) -> float:
        return max(rss for _, tagged, rss in self.samples if tagged == phase)

    def thirds(self, phase: str) -> tuple[float, float]:
        """Peak RSS of the first and of the last third of a phase."""
        values = [rss for _, tagged, rss in self.samples if tagged == phase]
        third = max(1, len(values) // 3)
        return max(values[:third]), max(values[-third:])


def loadtest(args: argparse.Namespace, url: str, body: pathlib.Path, extra: list[str]) -> dict:
    command = [args.loadtest, url, "--body", str(body), "--json", "--threads", "1", "--timeout", "30s", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if not done.stdout.strip():
        raise RuntimeError(f"loadtest printed nothing (exit {done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


def wait_ready(process: subprocess.Popen, url: str, log: pathlib.Path) -> None:
    """Polls `url` until it answers 200; fails when the process exits or after a minute."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sluice did not start: see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def post_status(request: urllib.request.Request, timeout: float = 30.0) -> int:
    """The status of a request (0: no answer)."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as refused:
        refused.read()
        return refused.code
    except OSError:
        return 0


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, float]:
    """The status of a POST and how long it took, in seconds."""
    started = time.monotonic()
    status = post_status(urllib.request.Request(url, data=body, method="POST"), timeout)
    return status, time.monotonic() - started


def floods(args: argparse.Namespace, out: pathlib.Path) -> dict:
    """Every flood at once against `sluice serve --demo`, with a probe."""
    data = out / "floods-data"
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    log = open(out / "floods.log", "wb")

    def low_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    gateway = subprocess.Popen(
        [args.sluice, "serve", "--demo", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
         "--admin-listen", f"127.0.0.1:{admin}", "--monitor-tick-ms", "1000",
         "--feedback-bytes-per-hour", str(256 << 20), "--log", "warn"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=low_descriptors)
    base = f"http://127.0.0.1:{port}"
    # The generator's own descriptors: as many as it may have.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        wait_ready(gateway, f"{base}/v2/health/ready", out / "floods.log")
        # digits' predictions are logged: each keeps its request id, which
        # must then be short.
        subprocess.run([args.sluice, "traffic", "set", "digits", "1=100", "--log-sample-rate", "0",
                        "--registry-url", f"http://127.0.0.1:{admin}", "--data-dir", str(data)],
                       check=True, capture_output=True, env=env)
        deadline = time.monotonic() + 10
        while True:
            request = urllib.request.Request(f"{base}/v2/models/digits/infer", method="POST",
                                             data=(ROOT / "models/examples/digits.json").read_bytes(),
                                             headers={"x-request-id": "l" * 300})
            if post_status(request) == 400:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("digits' logging never reached the gateway")
            time.sleep(0.05)
        credit = (ROOT / "models/examples/credit_risk.json").read_bytes()
        digits = json.loads((ROOT / "models/examples/digits.json").read_text())
        amplified = dict(digits, outputs=[{"name": "probabilities"}] * 20_000)
        long_id = dict(digits, id="i" * (8 << 20))
        # 20 labels of 65,536 rows: 3.9 MB, under the 4 MiB a body may hold.
        labels = [{"request_id": f"nobody-{index}", "label": [1] * 65_536} for index in range(20)]
        # Each flood's expected answers; 503 too, when the idle connections
        # hold the listener and a flood's new connection must wait its turn.
        floods_bodies = {
            "amplification": (f"{base}/v2/models/digits/infer", json.dumps(amplified).encode(), {400, 503}),
            "request_id": (f"{base}/v2/models/digits/infer", json.dumps(long_id).encode(), {400, 503}),
            "labels": (f"{base}/v2/models/credit_risk/feedback", json.dumps(labels).encode(), {200, 429, 503}),
        }
        stop = threading.Event()
        answers: dict[str, dict[int, int]] = {name: {} for name in floods_bodies}
        probes: list[tuple[int, float]] = []

        def flood(name: str) -> None:
            url, body, _ = floods_bodies[name]
            while not stop.is_set():
                status, _ = post(url, body)
                answers[name][status] = answers[name].get(status, 0) + 1

        def probe() -> None:
            while not stop.is_set():
                probes.append(post(f"{base}/v2/models/credit_risk/infer", credit, timeout=5))
                stop.wait(0.1)

        idle: list[socket.socket] = []

        def connections() -> None:
            # Twice what the listener holds (a quarter of 1,024), kept
            # open and opened again as the gateway closes the oldest.
            while not stop.is_set():
                idle[:] = [sock for sock in idle if sock.fileno() != -1]
                while len(idle) < 512 and not stop.is_set():
                    try:
                        idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                    except OSError:
                        break
                stop.wait(1.0)
                for sock in list(idle):
                    sock.setblocking(False)
                    try:
                        if sock.recv(1) == b"":
                            sock.close()
                    except BlockingIOError:
                        pass
                    except OSError:
                        sock.close()

        sampler = Sampler(gateway.pid, args.sample_s)
        descriptors: list[int] = []
        sampler.phase = "floods"
        sampler.start()
        kinds = set(args.flood_kinds.split(","))
        workers = [threading.Thread(target=flood, args=(name,), daemon=True) for name in floods_bodies
                   if name in kinds]
        workers.append(threading.Thread(target=probe, daemon=True))
        if "connections" in kinds:
            workers.append(threading.Thread(target=connections, daemon=True))
        for worker in workers:
            worker.start()
        ends = time.monotonic() + args.flood_minutes * 60
        while time.monotonic() < ends:
            descriptors.append(open_descriptors(gateway.pid))
            time.sleep(args.sample_s)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        sampler.stopped.set()
        sampler.join()
        for sock in idle:
            sock.close()
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        log.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with open(out / "floods.csv", "w", newline="", encoding="ascii") as samples:
        writer = csv.writer(samples)
        writer.writerow(["seconds", "phase", "rss_mib"])
        writer.writerows((f"{t:.1f}", phase, f"{rss:.1f}") for t, phase, rss in sampler.samples)
    rss_first, rss_last = sampler.thirds("floods")
    probe_ok = [took for status, took in probes if status == 200]
    checks = {
        # 0: refused at the connection (closed while the client still sent).
        "every flood refused as it should be": all(
            set(answers[name]) <= expected | {0} for name, (_, _, expected) in floods_bodies.items()),
        "every probe answered 200": len(probe_ok) == len(probes) > 0,
        "every probe within 1 s": max(probe_ok, default=9.9) < 1.0,
        "memory not growing": rss_last <= rss_first + 16.0,
        "descriptors under the limit": max(descriptors) < 1024,
    }
    return {
        "flood_minutes": args.flood_minutes,
        "answers": {name: {str(status): count for status, count in counts.items()} for name, counts in answers.items()},
        "probes": len(probes),
        "probe_p50_ms": round(1000 * statistics.median(probe_ok), 2) if probe_ok else None,
        "probe_max_ms": round(1000 * max(probe_ok), 2) if probe_ok else None,
        "rss_first_third_peak_mib": round(rss_first, 1),
        "rss_last_third_peak_mib": round(rss_last, 1),
        "descriptors_max": max(descriptors),
        "checks": checks,
        "verdict": "PASS" if all(checks.values()) else "FAIL",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the overload lasts (default 3)")
    parser.add_argument("--factor", type=float, default=2.0, help="overload rate over capacity (default 2)")
    parser.add_argument("--max-in-flight", type=int, default=32, help="the gateway's admission bound (default 32)")
    parser.add_argument("--compute-threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=128, help="the generator's connections under overload")
    parser.add_argument("--rows", type=int, default=64, help="digits rows per request (default 64)")
    parser.add_argument("--p99-factor", type=float, default=3.0)
    parser.add_argument("--sample-s", type=float, default=2.0)
    parser.add_argument("--flood-minutes", type=float, default=1.0,
                        help="how long the floods of issue 20 last (default 1; 0: none)")
    parser.add_argument("--flood-kinds", default="amplification,request_id,labels,connections",
                        help="which floods, comma-separated (default: all four)")
    parser.add_argument("--out", help="output directory (default: a new one under /tmp)")
    parser.add_argument("--sluice", default=str(ROOT / "target/release/sluice"))
    parser.add_argument("--loadtest", default=str(ROOT / "target/release/sluice-loadtest"))
    args = parser.parse_args()
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="sluice-overload-"))
    out.mkdir(parents=True, exist_ok=True)

    verdicts = []
    if args.minutes > 0:
        summary = overload(args, out)
        print(json.dumps(summary, indent=2))
        verdicts.append(summary["verdict"])
    if args.flood_minutes > 0:
        flooded = floods(args, out)
        (out / "floods.json").write_text(json.dumps(flooded, indent=2))
        print(json.dumps(flooded, indent=2))
        verdicts.append(flooded["verdict"])
    print(f"results in {out}")
    return 0 if verdicts and all(verdict == "PASS" for verdict in verdicts) else 1


def overload(args: argparse.Namespace, out: pathlib.Path) -> dict:
    """Capacity, then `--factor` times it for `--minutes`."""
    rng = random.Random(7)
    body = out / "digits.json"
    pixels = [round(rng.uniform(0, 16), 1) for _ in range(args.rows * 64)]
    body.write_text(json.dumps({"inputs": [
        {"name": "pixels", "shape": [args.rows, 64], "datatype": "FP32", "data": pixels}]}))

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    log = open(out / "gateway.log", "wb")
    gateway = subprocess.Popen(
        [args.sluice, "serve", "--model-repository", str(ROOT / "models/repository"),
         "--listen", f"127.0.0.1:{port}", "--compute-threads", str(args.compute_threads),
         # One model here: it may hold every slot (the per-model share is
         # for gateways serving several).
         "--max-in-flight", str(args.max_in_flight), "--max-in-flight-per-model", str(args.max_in_flight),
         "--log", "warn"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    try:
        wait_ready(gateway, f"http://127.0.0.1:{port}/v2/models/digits/ready", out / "gateway.log")

        sampler = Sampler(gateway.pid, args.sample_s)
        sampler.start()
        loadtest(args, url, body, ["--connections", str(args.max_in_flight), "--duration", "5s"])  # warm-up
        sampler.phase = "capacity"
        capacity = loadtest(args, url, body, ["--connections", str(args.max_in_flight), "--duration", "30s"])
        capacity_rps = capacity["achieved_rps"]
        rate = capacity_rps * args.factor
        sampler.phase = "overload"
        overload = loadtest(args, url, body, [
            "--rate", f"{rate:.0f}", "--connections", str(args.connections),
            "--duration", f"{args.minutes * 60:.0f}s", "--spin", "0"])
        sampler.phase = "after"
        time.sleep(args.sample_s * 2)
        sampler.stopped.set()
        sampler.join()
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        log.close()

    with open(out / "overload.csv", "w", newline="", encoding="ascii") as samples:
        writer = csv.writer(samples)
        writer.writerow(["seconds", "phase", "rss_mib"])
        writer.writerows((f"{t:.1f}", phase, f"{rss:.1f}") for t, phase, rss in sampler.samples)

    total = overload["total"]
    refused = total["errors"].get("status 503", 0)
    other_errors = {cls: n for cls, n in total["errors"].items() if cls != "status 503"}
    capacity_p99 = capacity["total"]["latency_ms"]["service"]["p99"]
    admitted_p99 = total["latency_ms"]["service"]["p99"]
    p99_bound = capacity_p99 * args.p99_factor + 5.0
    rss_capacity = sampler.peak("capacity")
    rss_overload = sampler.peak("overload")
    rss_first, rss_last = sampler.thirds("overload")
    scheduled = rate * overload["duration_s"]
    per_second = [second["p99_ms"] for second in overload["timeline"] if second["completed"] > 0]
    third = max(1, len(per_second) // 3)
    p99_first = statistics.median(per_second[:third])
    p99_last = statistics.median(per_second[-third:])
    checks = {
        "memory within 2x capacity": rss_overload <= 2 * rss_capacity,
        "memory not growing": rss_last <= rss_first + 4.0,
        "p99 not growing": p99_last <= 1.5 * p99_first + 2.0,
        f"admitted p99 within {args.p99_factor}x capacity p99 + 5 ms": admitted_p99 <= p99_bound,
        "excess refused with 503": refused > 0,
        "no other failure": not other_errors and capacity["total"]["errors"] == {},
        "scheduled load offered": total["requests"] >= 0.95 * scheduled,
    }
    summary = {
        "max_in_flight": args.max_in_flight,
        "compute_threads": args.compute_threads,
        "rows_per_request": args.rows,
        "capacity_rps": round(capacity_rps, 1),
        "capacity_p50_ms": capacity["total"]["latency_ms"]["service"]["p50"],
        "capacity_p99_ms": capacity_p99,
        "overload_target_rps": round(rate, 1),
        "overload_minutes": args.minutes,
        "overload_requests": total["requests"],
        "overload_admitted_ok": total["ok"],
        "overload_admitted_rps": round(total["ok"] / overload["duration_s"], 1),
        "overload_refused_503": refused,
        "overload_other_errors": other_errors,
        "admitted_p50_ms": total["latency_ms"]["service"]["p50"],
        "admitted_p99_ms": admitted_p99,
        "admitted_p99_bound_ms": round(p99_bound, 2),
        "per_second_p99_median_first_third_ms": round(p99_first, 2),
        "per_second_p99_median_last_third_ms": round(p99_last, 2),
        "refused_p99_ms_note": "refusals are not in the latency histograms (successes only)",
        "rss_idle_mib": round(sampler.peak("idle"), 1),
        "rss_capacity_peak_mib": round(rss_capacity, 1),
        "rss_overload_peak_mib": round(rss_overload, 1),
        "rss_overload_first_third_peak_mib": round(rss_first, 1),
        "rss_overload_last_third_peak_mib": round(rss_last, 1),
        "rss_after_mib": round(sampler.peak("after"), 1),
        "generator_late_fraction": overload["generator"]["late_fraction"],
        "checks": checks,
        "verdict": "PASS" if all(checks.values()) else "FAIL",
    }
    (out / "overload.json").write_text(json.dumps(summary, indent=2))
    return summary



if __name__ == "__main__":
    sys.exit(main())
