"""The summary of `benches/peers.sh`: every result row, then each target of
the performance issue beside the figure it was measured at, from this one
run. Standard library only.

    python3 targets.py WORK_DIR READY_MS DEMO_RSS_MB CONNECTIONS
"""

from __future__ import annotations

import pathlib
import re
import sys


def table(path: pathlib.Path) -> dict[str, list[str]]:
    """A whitespace table whose first column names the row (the header skipped)."""
    rows = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    return {row[0]: row[1:] for row in rows}


def main() -> None:
    work = pathlib.Path(sys.argv[1])
    ready_ms, demo_rss, connections = sys.argv[2], sys.argv[3], sys.argv[4]
    rows = [line.split() for line in (work / "results.txt").read_text().splitlines()]
    print(f"{'server':<18} {'model':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'RSS MB':>7}")
    for server, model, rps, p50, p99, failed, rss in rows:
        print(f"{server:<18} {model:<12} {rps:>8} {p50:>8} {p99:>8} {failed:>7} {rss:>7}")
    by = {(server, model): (float(rps), float(p99)) for server, model, rps, p50, p99, failed, rss in rows}

    def rps(server: str, model: str) -> float:
        return by[(server, model)][0]

    alone_rust = table(work / "alone-rust.txt")
    alone_python = table(work / "alone-python.txt")
    floor = table(work / "floor.txt")
    # The stronger of the two standalone baselines: the faster run.
    alone_us = {model: min(float(alone_rust[model][0]), float(alone_python[model][0])) for model in alone_rust}
    copies = {}
    for line in (work / "copies.txt").read_text().splitlines():
        ratio = re.search(r"\(([0-9.]+)x\)", line)
        if ratio:
            copies[line.split()[0]] = float(ratio.group(1))

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    print()
    print("targets (one run; the standalone engine is the faster of Rust's ort and Python's onnxruntime):")
    inside, alone = float(floor["mlp"][0]), alone_us["mlp"]
    print(f"- ONNX Runtime's MLP run inside Sluice within 10% of the engine alone: {inside:.1f} us vs {alone:.1f} us "
          f"(Rust {alone_rust['mlp'][0]}, Python {alone_python['mlp'][0]}): {inside / alone - 1:+.0%}, "
          f"{verdict(inside <= alone * 1.10)}")
    engine_rps = 1e6 / alone
    served = rps("sluice", "mlp")
    print(f"- MLP, JSON, batch 1, unbatched: {served:,.0f} req/s = {served / engine_rps:.0%} of the engine alone's "
          f"{engine_rps:,.0f} runs/s (target 60%): {verdict(served >= 0.6 * engine_rps)}")
    fastapi = rps("fastapi", "mlp")
    print(f"- MLP vs the careful FastAPI server ({fastapi:,.0f} req/s): {served / fastapi:.1f}x unbatched (target 4x): "
          f"{verdict(served >= 4 * fastapi)}; {rps('sluice', 'mlp_batched') / fastapi:.1f}x with dynamic batching "
          f"(target 8x): {verdict(rps('sluice', 'mlp_batched') >= 8 * fastapi)}")
    for peer in ["kserve", "mlserver"]:
        print(f"  (and vs {peer}: {served / rps(peer, 'mlp'):.1f}x unbatched, "
              f"{rps('sluice', 'mlp_batched') / rps(peer, 'mlp'):.1f}x batched)")
    ceiling = rps("hyper-fixed", "logreg30")
    logreg = rps("sluice", "logreg30")
    print(f"- 30 features: {logreg:,.0f} req/s = {logreg / ceiling:.0%} of the hyper fixed-body ceiling's "
          f"{ceiling:,.0f} (target 70%): {verdict(logreg >= 0.7 * ceiling)}; "
          f"pool (the default) / inline = {logreg / rps('sluice-inline', 'logreg30'):.2f}x")
    for model, bound in [("logreg30", 2.0), ("mlp", 5.0)]:
        rate, p99 = by[("sluice@80%", model)]
        print(f"- p99 at 80% of the maximum ({rate:,.0f} req/s), {model}: {p99:.2f} ms (target < {bound:g} ms): "
              f"{verdict(p99 < bound)}")
    rate, p99 = by[("hyper-fixed@rate", "logreg30")]
    print(f"  (the fixed-body ceiling at the same {rate:,.0f} req/s: p99 {p99:.2f} ms, the machine's own tail)")
    for engine in ["ort", "tract"]:
        print(f"- RSS of 100 copies of the MLP, {engine}: {copies[engine]:.2f}x the model files (target 1.5x): "
              f"{verdict(copies[engine] <= 1.5)}")
    for model in ["cnn", "mlp"]:
        print(f"- {model}, {connections} clients: batched / unbatched = "
              f"{rps('sluice-binary', model + '_batched') / rps('sluice-binary', model):.1f}x binary, "
              f"{rps('sluice', model + '_batched') / rps('sluice', model):.1f}x JSON")
    print(f"- sluice serve --demo: ready in {ready_ms} ms, peak RSS {demo_rss} MB after 3 s of load "
          f"(targets 1 s, 60 MB)")


if __name__ == "__main__":
    main()
