#!/usr/bin/env python3
"""Soak test: a gateway and a standalone registry under mixed load for a long
while, through hot swaps, progressive rollouts and a registry restart,
sampled every interval for memory, file descriptors, latency and errors.

    python3 scripts/soak.py                          # 30 minutes, 300 req/s
    python3 scripts/soak.py --minutes 3 --interval-s 30 --out /tmp/soak-short

It needs the release binaries (`cargo build --release -p sluice
--bin sluice -p sluice-loadtest --bin sluice-loadtest`), Python 3.11 and, for
the plot, matplotlib (`python3 -m pip install -r scripts/requirements-soak.txt`).
It is not part of CI: it takes half an hour by default, and its judgement is
about trends that a test suite's seconds cannot show.

What happens:

- `sluice registry` starts alone on a free port with a fresh data dir, and a
  `sluice serve --registry ...` gateway follows it, as in a multi-gateway
  deployment, so that a registry restart is something the gateway has to
  survive rather than a process restart of everything.
- credit_risk and digits (models/repository) are registered, approved into
  staging and deployed. The prediction log is on, so its writer (segments,
  files) is part of what must not leak.
- sluice-loadtest sends open-model load (a fixed rate whatever the server
  does, so a stall shows as latency instead of fewer requests) to both models,
  80% to credit_risk, in back-to-back chunks of one sample interval, each with
  its own --json report: each row's count, errors and percentiles are that
  interval's own. Each chunk opens new connections, which is also a way of
  checking that closed connections give their descriptors back.
- On a schedule scaled to --minutes (for 30 minutes: a hot swap every 3
  minutes, rollouts at minutes 7.5 and 19.5, the registry restart at 15): a
  swap pushes a new version, approves it and moves all traffic to it, then
  waits until the gateway answers from it; a rollout pushes a version and
  runs `sluice rollout start` with one-minute steps (scaled) until the
  registry promotes or rolls it back; the restart sends the registry SIGTERM,
  starts it again on the same port and data dir, and checks that the
  deployment survived. Swaps wait for a running rollout, because changing the
  traffic by hand aborts it.
- Midway through every chunk (steady load, a stable number of connections)
  the gateway's and the registry's RSS (VmRSS) and open descriptors are read
  from /proc.

Written into --out: soak.csv and soak.json (one row per interval, the events,
the verdict), soak.svg (RSS, descriptors and p99 against minutes, events
marked), the processes' logs (JSON lines) and each chunk's loadtest report.

Exit status: 0 when no interval had a failed request, nothing went wrong with
the events (a swap not served within 30 s, a rollout rolled back although
every version is the same model file, a registry that would not stop or
start, a process that did not stop cleanly at the end), and neither process
grew: RSS last > first * 1.2 + --rss-slack-mib, or descriptors last > first
+ max(8, 10%); 1 otherwise; 130 when interrupted (the partial results are
written anyway). For the gateway, "first" is the first sample after a warm-up
of a quarter of the run, two minutes at most: the prediction log's buffers
fill during the first minute and would otherwise pass for growth. Each
registry process is judged on its own samples.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

try:
    import matplotlib
except ImportError:
    # Before the run, not after half an hour of it.
    sys.exit("soak.py plots with matplotlib: python3 -m pip install -r scripts/requirements-soak.txt")
matplotlib.use("Agg")  # files only: no display is needed, or wanted
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CREDIT_ONNX = ROOT / "models/repository/credit_risk/1/model.onnx"
DIGITS_ONNX = ROOT / "models/repository/digits/1/model.onnx"
CREDIT_BODY = ROOT / "models/examples/credit_risk.json"
DIGITS_BODY = ROOT / "models/examples/digits.json"

# (model, share of the rate, open-model connections, body)
LOADS = [
    ("credit_risk", 0.8, 16, CREDIT_BODY),
    ("digits", 0.2, 4, DIGITS_BODY),
]

# Swaps at these fractions of the run; 0.5 is left to the registry restart so
# that the two are told apart in the samples, and the swap right after it
# proves the gateway follows the restarted registry.
SWAP_AT = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
ROLLOUT_AT = [0.25, 0.65]
RESTART_AT = 0.5

# A CLI call or a swap taking this long is itself a finding.
CLI_TIMEOUT_S = 60
SWAP_APPLY_TIMEOUT_S = 30
REGISTRY_STOP_TIMEOUT_S = 30
REGISTRY_START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int | None) -> dict[str, float | int | None]:
    """RSS (MiB), open descriptors and threads of a live process; None each if it is gone."""
    empty = {"rss_mib": None, "fds": None, "threads": None}
    if pid is None:
        return empty
    try:
        rss_kib = threads = None
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss_kib = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return empty
    return {
        "rss_mib": round(rss_kib / 1024, 2) if rss_kib is not None else None,
        "fds": fds,
        "threads": threads,
    }


class CliError(RuntimeError):
    pass


@dataclass
class Event:
    t: float  # seconds since the load started
    kind: str  # swap, rollout-start, rollout-end, registry-restart, anomaly
    detail: dict = field(default_factory=dict)

    def label(self) -> str:
        return {"swap": "S", "rollout-start": "R", "rollout-end": "P", "registry-restart": "X"}.get(self.kind, "!")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = pathlib.Path(args.out)
        self.chunks_dir = self.out / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        self.registry_dir = self.out / "registry-data"
        self.gateway_dir = self.out / "gateway-data"
        self.registry_port = free_port()
        self.gateway_port = free_port()
        self.registry_url = f"http://127.0.0.1:{self.registry_port}"
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.duration_s = args.minutes * 60.0
        self.warmup_s = min(120.0, self.duration_s / 4)
        # The default rollout, examples/policies/rollout.toml (steps of 10, 25, 50%, one a minute)
        # for a 30-minute run, proportionally shorter for a shorter one.
        self.rollout_interval_ms = max(3000, int(60_000 * self.duration_s / 1800))
        # The registry judges an interval on the gateway windows that began
        # inside it: reports must come several times per interval.
        self.stats_interval_ms = min(5000, max(500, self.rollout_interval_ms // 6))
        self.token = ""
        self.registry: subprocess.Popen | None = None
        self.gateway: subprocess.Popen | None = None
        self.registry_incarnation = 0
        self.lock = threading.Lock()
        self.loadtests: list[subprocess.Popen] = []
        self.stop = threading.Event()
        self.rows: list[dict] = []
        self.events: list[Event] = []
        self.t0 = 0.0
        self.latest_version = 0
        self.rollout_active = False
        self.rollout_version = 0
        self.log_files: list = []
        self.loader: threading.Thread | None = None
        self.probe_errors: list[str] = []
        # Nothing of the caller's SLUICE_* environment may change what is tested.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}

    # ---- processes -------------------------------------------------------

    def _log(self, name: str):
        handle = open(self.out / name, "ab")
        self.log_files.append(handle)
        return handle

    def start_registry(self) -> None:
        self.registry_incarnation += 1
        log = self._log("registry.log")
        # A new session: Ctrl-C reaches only this script, which stops the
        # children in order and still writes its results.
        self.registry = subprocess.Popen(
            [
                self.args.sluice, "registry",
                "--listen", f"127.0.0.1:{self.registry_port}",
                "--data-dir", str(self.registry_dir),
                "--log-format", "json", "--log", "info",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
        token_file = self.registry_dir / "admin.token"
        while time.monotonic() < deadline:
            if self.registry.poll() is not None:
                raise RuntimeError(f"the registry exited with {self.registry.returncode}: see {self.out}/registry.log")
            if token_file.exists() and token_file.read_text().strip():
                self.token = token_file.read_text().strip()
                try:
                    if self.api("GET", "/api/v1/health").get("status") == "ok":
                        return
                except (OSError, urllib.error.URLError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"the registry was not healthy within {REGISTRY_START_TIMEOUT_S} s")

    def start_gateway(self) -> None:
        log = self._log("gateway.log")
        self.gateway = subprocess.Popen(
            [
                self.args.sluice, "serve",
                "--registry", self.registry_url,
                "--listen", f"127.0.0.1:{self.gateway_port}",
                "--data-dir", str(self.gateway_dir),
                "--stats-interval-ms", str(self.stats_interval_ms),
                "--log-format", "json", "--log", "info",
            ],
            # The token by environment, out of the process list.
            stdout=log, stderr=subprocess.STDOUT, env=dict(self.env, SLUICE_SERVE_TOKEN=self.token),
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.gateway.returncode}: see {self.out}/gateway.log")
            try:
                with urllib.request.urlopen(f"{self.gateway_url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError("the gateway was not ready within 30 s")

    def stop_process(self, process: subprocess.Popen | None, timeout: float) -> dict:
        """SIGTERM, then SIGKILL after `timeout`; how long it took and how it ended."""
        if process is None or process.poll() is not None:
            return {"exit": None if process is None else process.returncode, "stop_s": 0.0, "killed": False}
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        killed = False
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed = True
        return {"exit": process.returncode, "stop_s": round(time.monotonic() - started, 3), "killed": killed}

    def cleanup(self) -> dict:
        self.stop.set()
        with self.lock:
            loadtests = list(self.loadtests)
        for process in loadtests:
            if process.poll() is None:
                process.kill()
                process.wait()
        # Its last chunk's row must be in before the results are written.
        if self.loader is not None:
            self.loader.join(10)
        # The gateway first: stopping the registry under it would only add
        # reconnect warnings to its log.
        ends = {
            "gateway": self.stop_process(self.gateway, 35),
            "registry": self.stop_process(self.registry, REGISTRY_STOP_TIMEOUT_S),
        }
        for handle in self.log_files:
            handle.close()
        self.log_files = []
        return ends

    # ---- registry and gateway calls -------------------------------------

    def api(self, method: str, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.registry_url}{path}", method=method, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def cli(self, *argv: str) -> dict:
        """One `sluice` CLI call against the registry, its --json answer parsed."""
        env = dict(self.env, SLUICE_REGISTRY_URL=self.registry_url, SLUICE_TOKEN=self.token, SLUICE_LOG="error")
        try:
            done = subprocess.run(
                [self.args.sluice, *argv, "--json"],
                capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as err:
            raise CliError(f"`sluice {' '.join(argv)}` took more than {CLI_TIMEOUT_S} s") from err
        if done.returncode != 0:
            raise CliError(f"`sluice {' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def infer_version(self, model: str, body: pathlib.Path) -> str | None:
        """The version that answered one request, or None when it failed."""
        request = urllib.request.Request(
            f"{self.gateway_url}/v2/models/{model}/infer",
            data=body.read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.headers.get("x-model-version")
        except (OSError, urllib.error.URLError) as err:
            # These probes run right across swaps: one failing is exactly
            # what the soak is looking for, not a retry to hide.
            detail = err.read().decode(errors="replace")[:200] if isinstance(err, urllib.error.HTTPError) else ""
            self.probe_errors.append(f"{model}: {err} {detail}".strip())
            if len(self.probe_errors) <= 5:  # the rest are counted in soak.json
                self.note_anomaly(f"a probe request to {model} failed: {err} {detail}".strip())
            return None

    def push_staged(self, model: str, onnx: pathlib.Path, why: str) -> int:
        """Registers the next version of `model` and approves it into staging, a stage that takes traffic."""
        parent = ["--parent-version", str(self.latest_version)] if model == "credit_risk" and self.latest_version else []
        pushed = self.cli(
            "versions", "push", model, str(onnx),
            "--metric", "auc=0.81", "--commit", f"soak-{int(time.time())}",
            "--dataset", f"soak://{model}", *parent,
        )
        version = int(pushed["version"])
        transition = self.cli("stage", "request", model, str(version), "staging", "--comment", why)
        if transition.get("status") != "applied":
            transition = self.cli("stage", "approve", str(transition["id"]), "--comment", "soak")
        if transition.get("status") != "applied":
            raise CliError(f"version {version} of {model} did not enter staging: {transition}")
        if model == "credit_risk":
            self.latest_version = version
        return version

    def deploy(self, model: str, version: int, reason: str) -> None:
        logging = [] if self.args.no_prediction_log else ["--log-sample-rate", str(self.args.log_sample_rate)]
        self.cli("traffic", "set", model, f"{version}=100", "--reason", reason, *logging)

    def wait_served(self, model: str, body: pathlib.Path, version: int) -> float | None:
        """Seconds until the gateway answers from `version`, None if it never did within the limit."""
        started = time.monotonic()
        while time.monotonic() - started < SWAP_APPLY_TIMEOUT_S:
            if self.infer_version(model, body) == str(version):
                return time.monotonic() - started
            time.sleep(0.01)
        return None

    # ---- setup -----------------------------------------------------------

    def setup(self) -> None:
        self.start_registry()
        for model, onnx in [("credit_risk", CREDIT_ONNX), ("digits", DIGITS_ONNX)]:
            self.cli("models", "create", model)
            version = self.push_staged(model, onnx, "soak: first version")
            self.deploy(model, version, "soak: first deployment")
        self.start_gateway()
        for model, _, _, body in LOADS:
            if self.wait_served(model, body, 1) is None:
                raise RuntimeError(f"the gateway never answered for {model}")
        (self.out / "rollout.toml").write_text(
            "step_weights = [10, 25, 50]\n"
            f"interval_ms = {self.rollout_interval_ms}\n"
            # Enough canary requests at the first step (10% of credit_risk's
            # share) to judge an interval, and never more than the default.
            f"min_requests = {min(100, max(20, int(self.args.rate * 0.8 * 0.1 * self.rollout_interval_ms / 1000 / 2)))}\n"
            "max_error_rate = 0.01\n"
            "max_p99_ratio = 1.5\n"
            "threshold = 3\n"
        )

    # ---- load and sampling ----------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def load_loop(self) -> None:
        chunks = max(1, math.ceil(self.duration_s / self.args.interval_s - 1e-9))
        for index in range(chunks):
            if self.stop.is_set():
                return
            try:
                row = self.run_chunk(index)
                if row is not None:
                    self.rows.append(row)
            except Exception as err:  # a broken chunk must not end the soak silently
                self.note_anomaly(f"load chunk {index} failed: {err}")

    def loadtest_command(
        self, model: str, share: float, connections: int, body: pathlib.Path, seconds: float, seed: int
    ) -> list[str]:
        """sluice-loadtest's open-model load on `model`: its `share` of --rate for `seconds`."""
        return [
            self.args.loadtest, f"{self.gateway_url}/v2/models/{model}/infer",
            "--body", str(body),
            "--rate", f"{self.args.rate * share:g}",
            "--duration", f"{int(seconds * 1000)}ms",
            "--connections", str(connections),
            # One event loop each and no spinning: the gateway needs the
            # cores more than the schedule needs microseconds (send lag
            # is reported separately from service time anyway).
            "--threads", "1", "--spin", "0",
            "--seed", str(seed),
        ]

    def run_chunk(self, index: int) -> dict | None:
        length = min(self.args.interval_s, self.duration_s - index * self.args.interval_s)
        started = self.elapsed()
        processes = []
        for model, share, connections, body in LOADS:
            report = self.chunks_dir / f"{index:03d}-{model}.json"
            stderr = self.chunks_dir / f"{index:03d}-{model}.stderr"
            command = self.loadtest_command(model, share, connections, body, length, index + 1) + [
                "--split-by-header", "x-model-version",
                "--json",
            ]
            with open(report, "wb") as out, open(stderr, "wb") as err:
                process = subprocess.Popen(command, stdout=out, stderr=err, env=self.env, start_new_session=True)
            with self.lock:
                self.loadtests.append(process)
            processes.append((model, process, report, stderr))
        self.stop.wait(length / 2)
        sampled_at = self.elapsed()
        gateway = proc_stats(self.gateway.pid if self.gateway else None)
        with self.lock:
            registry_pid = self.registry.pid if self.registry and self.registry.poll() is None else None
            incarnation = self.registry_incarnation
        registry = proc_stats(registry_pid)
        per_model = {}
        for model, process, report, stderr in processes:
            # Past its duration plus the loadtest's own 10 s request timeout, it hangs.
            deadline = time.monotonic() + length + 30
            while process.poll() is None and time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.05)
            hung = process.poll() is None and not self.stop.is_set()
            if process.poll() is None:
                process.kill()
                process.wait()
            with self.lock:
                self.loadtests.remove(process)
            if self.stop.is_set():
                continue
            if hung:
                self.note_anomaly(f"the {model} loadtest of chunk {index} was still running {length + 30:g} s after it began")
            per_model[model] = self.read_report(model, process.returncode, report, stderr)
        if self.stop.is_set():
            return None  # cut short by an interrupt: not an interval's sample
        ended = self.elapsed()
        requests = sum(m["requests"] for m in per_model.values())
        errors = sum(m["errors"] for m in per_model.values())
        p50s = [m["p50_ms"] for m in per_model.values() if m["p50_ms"] is not None]
        p99s = [m["p99_ms"] for m in per_model.values() if m["p99_ms"] is not None]
        corrected = [m["p99_corrected_ms"] for m in per_model.values() if m["p99_corrected_ms"] is not None]
        return {
            "index": index,
            "minute": round(ended / 60, 3),
            "start_s": round(started, 3),
            "sample_s": round(sampled_at, 3),
            "end_s": round(ended, 3),
            "gateway_rss_mib": gateway["rss_mib"],
            "gateway_fds": gateway["fds"],
            "gateway_threads": gateway["threads"],
            "registry_rss_mib": registry["rss_mib"],
            "registry_fds": registry["fds"],
            "registry_threads": registry["threads"],
            "registry_incarnation": incarnation,
            "requests": requests,
            "errors": errors,
            # The worst model's: percentiles of two runs cannot be merged.
            "p50_ms": max(p50s) if p50s else None,
            "p99_ms": max(p99s) if p99s else None,
            "p99_corrected_ms": max(corrected) if corrected else None,
            "models": per_model,
            "events": [],
        }

    def read_report(self, model: str, code: int, report: pathlib.Path, stderr: pathlib.Path) -> dict:
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            message = stderr.read_text(errors="replace").strip()[-500:]
            self.note_anomaly(f"the {model} loadtest gave no report (exit {code}): {message}")
            # Unknown is not zero: count one error so that the verdict cannot pass.
            return {"requests": 0, "errors": 1, "error_classes": {"no report": 1}, "p50_ms": None,
                    "p99_ms": None, "p99_corrected_ms": None, "versions": {}, "exit": code, "verdict": None}
        total = data["total"]
        ok = total["ok"]
        return {
            "requests": total["requests"],
            "errors": total["requests"] - ok,
            "error_classes": total["errors"],
            "error_messages": total.get("messages", {}),
            "p50_ms": total["latency_ms"]["service"]["p50"] if ok else None,
            "p99_ms": total["latency_ms"]["service"]["p99"] if ok else None,
            "p99_corrected_ms": total["latency_ms"]["corrected"]["p99"] if ok else None,
            "max_ms": total["latency_ms"]["service"]["max"] if ok else None,
            "achieved_rps": data["achieved_rps"],
            "versions": {version: group["requests"] for version, group in data["by_version"].items()},
            "generator_kept_schedule": data["generator"]["kept_schedule"],
            "exit": code,
            "verdict": data["verdict"],
        }

    # ---- events ------------------------------------------------------------

    def record(self, kind: str, **detail) -> Event:
        event = Event(round(self.elapsed(), 3), kind, detail)
        self.events.append(event)
        shown = ", ".join(f"{k}={v}" for k, v in detail.items())
        print(f"[{event.t / 60:6.2f} min] {kind}: {shown}", flush=True)
        return event

    def note_anomaly(self, what: str) -> None:
        self.record("anomaly", what=what)

    def swap(self) -> None:
        version = self.push_staged("credit_risk", CREDIT_ONNX, "soak: hot swap")
        self.deploy("credit_risk", version, "soak: hot swap")
        applied = self.wait_served("credit_risk", CREDIT_BODY, version)
        self.record("swap", version=version, applied_ms=None if applied is None else round(applied * 1000, 1))
        if applied is None:
            self.note_anomaly(f"the gateway did not serve version {version} within {SWAP_APPLY_TIMEOUT_S} s of its deployment")

    def start_rollout(self) -> None:
        version = self.push_staged("credit_risk", CREDIT_ONNX, "soak: canary")
        rollout = self.cli(
            "rollout", "start", "credit_risk", str(version), "--policy", str(self.out / "rollout.toml")
        )
        self.rollout_active = True
        self.rollout_version = version
        self.record("rollout-start", version=version, stable=rollout.get("stable"),
                    interval_ms=rollout.get("policy", {}).get("interval_ms"))

    def poll_rollout(self) -> None:
        rollout = self.api("GET", "/api/v1/rollouts/credit_risk")
        status = rollout.get("status")
        if status in ("progressing", "paused"):
            return
        self.rollout_active = False
        intervals = rollout.get("intervals", [])
        verdicts = [interval.get("verdict") for interval in intervals]
        detail = {
            "version": rollout.get("canary"),
            "status": status,
            "intervals": "/".join(v[0] for v in verdicts if v),  # p(assed), f(ailed), i(nconclusive)
        }
        failed = [reason for interval in intervals if interval.get("verdict") == "failed"
                  for reason in interval.get("reasons", [])]
        if failed:
            detail["failed_intervals"] = "; ".join(dict.fromkeys(failed))[:300]
        if status == "promoted":
            applied = self.wait_served("credit_risk", CREDIT_BODY, self.rollout_version)
            detail["applied_ms"] = None if applied is None else round(applied * 1000, 1)
            self.record("rollout-end", **detail)
            if applied is None:
                self.note_anomaly(f"promoted version {self.rollout_version} was not served within {SWAP_APPLY_TIMEOUT_S} s")
        else:
            reasons = [reason for interval in intervals for reason in interval.get("reasons", [])]
            detail["reasons"] = "; ".join(dict.fromkeys(reasons))[:300]
            self.record("rollout-end", **detail)
            # Every version is the same model file: only a broken measurement rolls one back.
            self.note_anomaly(f"the rollout of identical version {self.rollout_version} ended {status}: {detail['reasons']}")

    def restart_registry(self) -> None:
        before = self.cli("traffic", "show", "credit_risk")
        with self.lock:
            old = self.registry
        ended = self.stop_process(old, REGISTRY_STOP_TIMEOUT_S)
        stopped_at = time.monotonic()
        if ended["killed"]:
            self.note_anomaly(f"the registry did not stop within {REGISTRY_STOP_TIMEOUT_S} s of SIGTERM")
        elif ended["exit"] != 0:
            self.note_anomaly(f"the registry exited with {ended['exit']} on SIGTERM")
        with self.lock:
            self.registry = None
        try:
            self.start_registry()
        except RuntimeError as err:
            self.note_anomaly(f"the registry did not come back: {err}")
            raise
        down_s = time.monotonic() - stopped_at
        after = self.cli("traffic", "show", "credit_risk")
        self.record("registry-restart", stop_s=ended["stop_s"], exit=ended["exit"], down_s=round(down_s, 3),
                    pid=self.registry.pid)
        if (before.get("revision"), before.get("targets")) != (after.get("revision"), after.get("targets")):
            self.note_anomaly(f"the deployment changed across the registry restart: {before} then {after}")

    def schedule(self) -> list[tuple[float, str]]:
        plan = [(f * self.duration_s, "swap") for f in SWAP_AT]
        plan += [(f * self.duration_s, "rollout") for f in ROLLOUT_AT]
        plan.append((RESTART_AT * self.duration_s, "restart"))
        return sorted(plan)

    def drive(self) -> None:
        """Runs the schedule while the load thread runs; returns when the load is done."""
        plan = self.schedule()
        loader = threading.Thread(target=self.load_loop, name="load", daemon=True)
        self.loader = loader
        self.t0 = time.monotonic()
        loader.start()
        next_poll = 0.0
        while loader.is_alive():
            now = self.elapsed()
            try:
                if self.rollout_active and now >= next_poll:
                    next_poll = now + 1.0
                    self.poll_rollout()
                if plan and now >= plan[0][0]:
                    kind = plan[0][1]
                    # Changing the traffic by hand would abort the rollout.
                    if kind == "restart" or not self.rollout_active:
                        plan.pop(0)
                        {"swap": self.swap, "rollout": self.start_rollout, "restart": self.restart_registry}[kind]()
            except (CliError, OSError, urllib.error.URLError, RuntimeError, ValueError, KeyError) as err:
                self.note_anomaly(f"{type(err).__name__}: {err}")
                if self.registry is None:
                    break  # no registry: nothing left to schedule
            loader.join(0.2)
        if self.rollout_active:
            try:
                self.poll_rollout()
            except (OSError, urllib.error.URLError, ValueError) as err:
                self.note_anomaly(f"reading the rollout at the end: {err}")
            if self.rollout_active:
                self.note_anomaly(f"the rollout of version {self.rollout_version} was still running at the end")
        for at, kind in plan:
            self.note_anomaly(f"the {kind} scheduled at {at / 60:.2f} min never ran")

    # ---- results -------------------------------------------------------------

    def attach_events(self) -> None:
        for row in self.rows:
            row["events"] = []
        for event in self.events:
            for row in self.rows:
                if event.t < row["end_s"] or row is self.rows[-1]:
                    row["events"].append(event.kind)
                    break

    def write_csv(self) -> None:
        columns = [
            "minute", "start_s", "end_s", "gateway_rss_mib", "gateway_fds", "gateway_threads",
            "registry_rss_mib", "registry_fds", "registry_threads", "registry_incarnation",
            "requests", "errors", "p50_ms", "p99_ms", "p99_corrected_ms",
            "credit_risk_p99_ms", "digits_p99_ms", "credit_risk_versions", "events",
        ]
        with open(self.out / "soak.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                flat = {key: row.get(key) for key in columns}
                flat["credit_risk_p99_ms"] = row["models"].get("credit_risk", {}).get("p99_ms")
                flat["digits_p99_ms"] = row["models"].get("digits", {}).get("p99_ms")
                versions = row["models"].get("credit_risk", {}).get("versions", {})
                flat["credit_risk_versions"] = " ".join(f"{v}:{n}" for v, n in sorted(versions.items()))
                flat["events"] = " ".join(row["events"])
                writer.writerow(flat)

    def gateway_baseline_rows(self) -> list[dict]:
        """The rows the gateway's growth is judged on: those after its warm-up.

        Until the prediction log has written its first segments (a minute
        each) and the allocator has its arenas, RSS climbs by about 10 MiB at
        300 req/s and then swings around a plateau; judged from the very first
        sample, that climb would pass for a leak, or hide one in the slack.
        """
        warmed = [row for row in self.rows if row["sample_s"] >= self.warmup_s]
        return warmed if len(warmed) >= 2 else self.rows

    def verdict(self) -> dict:
        args = self.args
        reasons = []
        total_requests = sum(row["requests"] for row in self.rows)
        total_errors = sum(row["errors"] for row in self.rows)
        if total_errors:
            reasons.append(f"{total_errors} failed requests")
        if not self.rows:
            reasons.append("no interval completed")

        def growth(name: str, rows: list[dict]) -> None:
            rss = [row[f"{name}_rss_mib"] for row in rows if row[f"{name}_rss_mib"] is not None]
            fds = [row[f"{name}_fds"] for row in rows if row[f"{name}_fds"] is not None]
            if len(rss) >= 2 and rss[-1] > rss[0] * 1.2 + args.rss_slack_mib:
                reasons.append(f"{name} RSS grew from {rss[0]:.1f} to {rss[-1]:.1f} MiB")
            if len(fds) >= 2 and fds[-1] > fds[0] + max(8, 0.1 * fds[0]):
                reasons.append(f"{name} descriptors grew from {fds[0]} to {fds[-1]}")

        growth("gateway", self.gateway_baseline_rows())
        # Each registry process is judged on its own: a restart starts from scratch.
        for incarnation in sorted({row["registry_incarnation"] for row in self.rows}):
            growth("registry", [row for row in self.rows if row["registry_incarnation"] == incarnation])
        anomalies = [event.detail["what"] for event in self.events if event.kind == "anomaly"]
        reasons += anomalies
        return {"passed": not reasons, "reasons": reasons, "requests": total_requests, "errors": total_errors}

    def log_levels(self) -> dict:
        """WARN and ERROR lines of each process's log, with their distinct messages."""
        summary = {}
        for name in ["gateway", "registry"]:
            counts = {"WARN": 0, "ERROR": 0}
            messages: dict[str, int] = {}
            path = self.out / f"{name}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                level = entry.get("level")
                if level in counts:
                    counts[level] += 1
                    fields = entry.get("fields", {})
                    key = f"{level} {fields.get('message', '')} {fields.get('error', '')}".strip()
                    messages[key] = messages.get(key, 0) + 1
            summary[name] = {"counts": counts, "messages": messages}
        return summary

    def summarize(self, ends: dict, interrupted: bool) -> int:
        self.attach_events()
        verdict = self.verdict()
        logs = self.log_levels()
        for name, end in ends.items():
            if end["killed"]:
                verdict["reasons"].append(f"the {name} did not stop within its limit on SIGTERM at the end")
            elif end["exit"] not in (0, None):
                verdict["reasons"].append(f"the {name} exited with {end['exit']} on SIGTERM at the end")
        verdict["passed"] = not verdict["reasons"] and not interrupted
        self.write_csv()
        document = {
            "schema": "sluice-soak/v1",
            "args": {k: str(v) for k, v in vars(self.args).items()},
            "rollout_interval_ms": self.rollout_interval_ms,
            "stats_interval_ms": self.stats_interval_ms,
            "rows": self.rows,
            "events": [{"t_s": e.t, "minute": round(e.t / 60, 3), "kind": e.kind, **e.detail} for e in self.events],
            "shutdown": ends,
            "logs": logs,
            "probe_errors": self.probe_errors,
            "interrupted": interrupted,
            "verdict": verdict,
        }
        (self.out / "soak.json").write_text(json.dumps(document, indent=2) + "\n")
        write_plot(self.out / "soak.svg", self.rows, self.events, self.args)

        def first_last_max(key: str) -> str:
            values = [row[key] for row in self.rows if row[key] is not None]
            if not values:
                return "n/a"
            return f"first {values[0]:g}, last {values[-1]:g}, max {max(values):g}"

        p99 = [row["p99_ms"] for row in self.rows if row["p99_ms"] is not None]
        swaps = [e for e in self.events if e.kind == "swap"]
        applied = [e.detail["applied_ms"] for e in swaps if e.detail.get("applied_ms") is not None]
        rollouts = [e.detail.get("status") for e in self.events if e.kind == "rollout-end"]
        restarts = [e for e in self.events if e.kind == "registry-restart"]
        print()
        print(f"soak: {self.args.minutes:g} min at {self.args.rate:g} req/s, {len(self.rows)} samples "
              f"every {self.args.interval_s:g} s, results in {self.out}")
        print(f"requests: {verdict['requests']}, errors: {verdict['errors']}"
              f" (and {len(self.probe_errors)} of the swap probes failed)")
        print(f"gateway RSS MiB: {first_last_max('gateway_rss_mib')}; fds: {first_last_max('gateway_fds')}")
        baseline = self.gateway_baseline_rows()
        if baseline and baseline[0] is not self.rows[0]:
            print(f"gateway growth judged from minute {baseline[0]['minute']:g} (after warm-up): "
                  f"RSS {baseline[0]['gateway_rss_mib']} -> {baseline[-1]['gateway_rss_mib']} MiB "
                  f"(limit {baseline[0]['gateway_rss_mib'] * 1.2 + self.args.rss_slack_mib:.1f}), "
                  f"fds {baseline[0]['gateway_fds']} -> {baseline[-1]['gateway_fds']}")
        for incarnation in sorted({row["registry_incarnation"] for row in self.rows}):
            rows = [row for row in self.rows if row["registry_incarnation"] == incarnation]
            rss = [row["registry_rss_mib"] for row in rows if row["registry_rss_mib"] is not None]
            fds = [row["registry_fds"] for row in rows if row["registry_fds"] is not None]
            if rss:
                print(f"registry #{incarnation} RSS MiB: first {rss[0]:g}, last {rss[-1]:g}, max {max(rss):g}; "
                      f"fds: first {fds[0]}, last {fds[-1]}, max {max(fds)}")
        if p99:
            print(f"p99 ms (worst model per interval): first {p99[0]:g}, median {statistics.median(p99):g}, max {max(p99):g}")
        parts = [f"{len(swaps)} swaps"
                 + (f" (served in median {statistics.median(applied):.0f} ms, max {max(applied):.0f} ms)" if applied else ""),
                 f"rollouts: {', '.join(rollouts) or 'none finished'}"]
        parts += [f"registry restart (stopped in {e.detail['stop_s']} s, down {e.detail['down_s']} s)" for e in restarts]
        anomalies = [e.detail["what"] for e in self.events if e.kind == "anomaly"]
        print("events: " + ", ".join(parts))
        for what in anomalies:
            print(f"  anomaly: {what}")
        for name, log in logs.items():
            print(f"{name} log: {log['counts']['WARN']} WARN, {log['counts']['ERROR']} ERROR")
            for message, count in sorted(log["messages"].items(), key=lambda item: -item[1])[:5]:
                print(f"  {count:>5} x {message[:160]}")
        if interrupted:
            print("verdict: INTERRUPTED (partial results written)")
            return 130
        if verdict["passed"]:
            print("verdict: PASS (no growth, no errors)")
            return 0
        print("verdict: FAIL: " + "; ".join(verdict["reasons"]))
        return 1


# ---- the plot ------------------------------------------------------------------

# (panel title, [(legend label, row key or (model, key), colour, line style)])
PANELS = [
    ("RSS (MiB)", [("gateway", "gateway_rss_mib", "#1f77b4", "-"), ("registry", "registry_rss_mib", "#ff7f0e", "--")]),
    ("open file descriptors", [("gateway", "gateway_fds", "#1f77b4", "-"), ("registry", "registry_fds", "#ff7f0e", "--")]),
    ("p99 service latency (ms)", [("credit_risk", ("credit_risk", "p99_ms"), "#2ca02c", "-"),
                                  ("digits", ("digits", "p99_ms"), "#9467bd", "--")]),
]
SHORT_DASHES = (0, (3, 3))
# Event kind: (colour, line style, key text); other kinds are anomalies.
MARKERS = {
    "swap": ("#1f77b4", SHORT_DASHES, "S hot swap"),
    "rollout-start": ("#2ca02c", "-", "R rollout start"),
    "rollout-end": ("#2ca02c", SHORT_DASHES, "P rollout end"),
    "registry-restart": ("#d62728", "-", "X registry restart"),
    "anomaly": ("#000000", (0, (1, 2)), "! anomaly"),
}


def series_points(rows: list[dict], key) -> tuple[list[float], list[float]]:
    """Minutes and values of one series, skipping samples it lacks (a
    registry down while it restarts, a model with no successful request)."""
    points = []
    for row in rows:
        value = row["models"].get(key[0], {}).get(key[1]) if isinstance(key, tuple) else row.get(key)
        if value is not None:
            points.append((row["minute"], value))
    return [x for x, _ in points], [y for _, y in points]


def plot_panel(axes, rows: list[dict], title: str, series: list) -> None:
    axes.set_title(title, loc="left", fontweight="bold", fontsize=12)
    top = 0.0
    for label, key, colour, style in series:
        xs, ys = series_points(rows, key)
        axes.plot(xs, ys, color=colour, linestyle=style, linewidth=2, marker="o", markersize=4, label=label)
        top = max([top, *ys])
    # From zero, so that growth reads as a share of the whole.
    axes.set_ylim(0, top * 1.05 if top > 0 else 1.0)
    axes.grid(color="#eeeeee")
    axes.set_axisbelow(True)


def mark_events(axes, events: list[Event], x_top: float, lettered: bool) -> None:
    for event in events:
        colour, style, _ = MARKERS.get(event.kind, MARKERS["anomaly"])
        axes.axvline(event.t / 60, color=colour, linestyle=style, linewidth=1)
    if lettered:
        letter_events(axes, events, x_top)


def letter_events(axes, events: list[Event], x_top: float) -> None:
    """Each event's letter above the panel's title. Events seconds apart (a
    rollout's end and the swap it held back) get theirs on separate rows."""
    near = x_top / 80  # about a letter's width
    taken: dict[int, list[float]] = {}
    for event in events:
        colour = MARKERS.get(event.kind, MARKERS["anomaly"])[0]
        x = event.t / 60
        row = next(r for r in range(len(events) + 1) if all(abs(x - other) > near for other in taken.get(r, [])))
        taken.setdefault(row, []).append(x)
        axes.text(x, 1.22 + 0.1 * min(row, 3), event.label(), transform=axes.get_xaxis_transform(),
                  color=colour, fontweight="bold", ha="center", va="bottom")


def event_key(events: list[Event]) -> list[Line2D]:
    """Legend entries for the kinds of event that happened, in MARKERS' order."""
    kinds = [kind for kind in MARKERS if any(event.kind == kind for event in events)]
    return [Line2D([], [], color=MARKERS[kind][0], linestyle=MARKERS[kind][1], label=MARKERS[kind][2]) for kind in kinds]


def write_plot(path: pathlib.Path, rows: list[dict], events: list[Event], args: argparse.Namespace) -> None:
    """RSS, descriptors and p99 against minutes, one panel each, events marked."""
    figure = Figure(figsize=(10, 7.75))  # 960 by 744 CSS pixels, as the plot has been
    figure.subplots_adjust(left=0.08, right=0.80, top=0.85, bottom=0.08, hspace=0.6)
    figure.suptitle(f"Sluice soak: {args.minutes:g} min at {args.rate:g} req/s, sampled every {args.interval_s:g} s",
                    x=0.08, ha="left", fontsize=14, fontweight="bold")
    # The axis ends where the run did (the last chunk ends a little past
    # --minutes), not at the next round number, which could add a quarter.
    x_top = max([args.minutes] + [row["minute"] for row in rows])
    panels = figure.subplots(len(PANELS), 1, sharex=True)
    for index, (axes, (title, series)) in enumerate(zip(panels, PANELS)):
        plot_panel(axes, rows, title, series)
        mark_events(axes, events, x_top, lettered=index == 0)
        axes.set_xlim(0, x_top)
        axes.tick_params(labelbottom=True)  # minutes under every panel, not only the last
        handles = axes.get_legend_handles_labels()[0]
        # The event key sits under the first panel's series key.
        if index == 0:
            handles += event_key(events)
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    panels[-1].set_xlabel("minutes since the load started")
    # Text stays text (smaller, searchable), and no date: the same run gives the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sluice-soak"}):
        figure.savefig(path, format="svg", metadata={"Date": None})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="open-model requests per second, all models together (default 300: modest, for 2 cores)")
    parser.add_argument("--interval-s", type=float, default=60.0, help="sample period, one loadtest chunk each (default 60)")
    parser.add_argument("--out", help="output directory (default: a new one under /tmp)")
    parser.add_argument("--sluice", default=str(ROOT / "target/release/sluice"))
    parser.add_argument("--loadtest", default=str(ROOT / "target/release/sluice-loadtest"))
    parser.add_argument("--log-sample-rate", type=float, default=0.01,
                        help="the deployments' prediction log input sample (every prediction is logged; default 0.01)")
    parser.add_argument("--no-prediction-log", action="store_true",
                        help="deploy without the prediction log (to tell its buffers from a leak)")
    parser.add_argument("--rss-slack-mib", type=float, default=8.0,
                        help="RSS growth allowed beyond 20%% before it counts as growth (default 8)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.interval_s <= 0 or args.rate <= 0:
        parser.error("--minutes, --interval-s and --rate must be positive")
    for binary in (args.sluice, args.loadtest):
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} is not an executable: build the release binaries first")
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="sluice-soak-")
    elif pathlib.Path(args.out).exists() and any(pathlib.Path(args.out).iterdir()):
        parser.error(f"{args.out} is not empty: the registry's data dir must start fresh")

    soak = Soak(args)
    interrupted = False

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # Explicitly, SIGINT too: a shell starting this in the background hands
    # it SIGINT ignored, and `kill -INT` must still stop it cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ends: dict = {}
    try:
        print(f"soak: registry {soak.registry_url}, gateway {soak.gateway_url}, output {soak.out}", flush=True)
        soak.setup()
        print(f"soak: models deployed; {args.minutes:g} min of load at {args.rate:g} req/s, rollout steps of "
              f"{soak.rollout_interval_ms} ms, gateway stats every {soak.stats_interval_ms} ms", flush=True)
        soak.drive()
    except KeyboardInterrupt:
        interrupted = True
        print("\nsoak: interrupted, stopping the processes", flush=True)
    except Exception as err:
        soak.note_anomaly(f"the soak itself failed: {type(err).__name__}: {err}")
    finally:
        # A second Ctrl-C must not leave orphans behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ends = soak.cleanup()
    return soak.summarize(ends, interrupted)


if __name__ == "__main__":
    sys.exit(main())
