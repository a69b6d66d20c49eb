#!/usr/bin/env python3
"""Write `models/fixtures/drift.json`: drift statistics computed with numpy and scipy.

Run from the repository root:

    python3 models/drift_fixtures.py

Each case is a reference distribution over bins (shares) and observed counts
over the same bins; the expected values are what Sluice's drift module must
reproduce (registry/src/drift.rs, tested within 1e-9):

- PSI: sum((o - r) * ln(o / r)) over shares, a zero share replaced by 1e-4;
- Jensen-Shannon distance, log base 2 (scipy.spatial.distance.jensenshannon);
- KS statistic of the binned distributions: the largest gap between the two
  cumulative distributions at the bin boundaries;
- chi-square statistic and p-value of the counts against the reference
  (scipy.stats.chisquare), for categorical features.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare

ROOT = pathlib.Path(__file__).resolve().parent
EPSILON = 1e-4


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    r = np.where(reference == 0, EPSILON, reference)
    o = np.where(observed == 0, EPSILON, observed)
    return float(np.sum((o - r) * np.log(o / r)))


def case(name: str, reference: list[float], counts: list[int]) -> dict:
    r = np.asarray(reference, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    o = n / n.sum()
    statistic, p_value = chisquare(n, r * n.sum())
    return {
        "name": name,
        "reference": reference,
        "counts": counts,
        "psi": psi(r, o),
        "js_distance": float(jensenshannon(r, o, base=2)),
        "ks": float(np.max(np.abs(np.cumsum(r) - np.cumsum(o)))),
        "chi_square": float(statistic),
        "chi_square_p": float(p_value),
    }


def main() -> None:
    rng = np.random.default_rng(20261126)
    ten = [0.1] * 10
    cases = [
        case("identical", ten, [100] * 10),
        case("mild shift", ten, [80, 85, 90, 95, 100, 100, 105, 110, 115, 120]),
        case("strong shift", ten, [10, 20, 30, 40, 60, 80, 120, 160, 220, 260]),
        case("empty bins", [0.25, 0.25, 0.25, 0.25], [0, 50, 100, 250]),
        case("skewed reference", [0.5, 0.3, 0.15, 0.05], [400, 350, 200, 50]),
        case("random counts", [1 / 12] * 12, [int(x) for x in rng.integers(20, 200, size=12)]),
    ]
    path = ROOT / "fixtures/drift.json"
    path.write_text(json.dumps({"epsilon": EPSILON, "cases": cases}, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT.parent)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
