#!/usr/bin/env python3
"""Write the behavioural test suite of the credit model: `models/repository/credit_risk/suite.json`.

Run from the repository root after `models/train.py`:

    python3 models/suites.py

A suite checks what a model does, not how well it scores on a data set, in
the manner of CheckList (Ribeiro et al., 2020). Every case starts from the
suite's `base` applicant, whose features its `inputs` override; there are four
kinds:

- golden: an applicant and the outputs version 1 gives it (`label` and
  `probabilities[1]`, rounded to 6 decimals), within `tolerance`. The
  applicants are rows of the training data (counted from 1 after the header)
  at low, medium and high risk, picked as the rows whose probability of
  default is nearest to fixed targets;
- invariance: a change that a sound credit model should hardly care about
  (a year of age, 1% of income, one more month employed...) must leave the
  predicted class (`class`) as it is. The applicants are clearly away from
  the decision boundary;
- directional: a change whose effect on the probability of default (`score`)
  is domain knowledge (a larger loan, more late payments, a higher debt ratio
  raise it; a higher income, a longer employment lower it) must move the
  score that way: `higher` and `lower` strictly, `not_lower` and `not_higher`
  within 1e-6;
- minimum functionality: clear-cut applicants of each age band (the slices of
  the model card), obviously safe ones labelled 0 and obviously risky ones 1;
  in each named slice a share `min_pass_rate` of them must pass.

A `change` value that is a number sets the feature; a string "+x", "-x" or
"*x" adds, subtracts or multiplies (in f64, the result fed as f32).

Only directions that version 1 respects are written: the script measures the
sign of the model's dependence on each feature (ONNX Runtime, base applicant)
and prints it. Age and credit lines get no directional case: the model lowers
the risk with both, but neither direction is a domain truth to hold a model
to.

The script asserts that version 1 passes every case, and runs the suite on
the deliberately broken `models/test/credit_risk_inverted` (labels and class
scores swapped) to print how many cases of each kind it fails; nothing is
written for that model.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnxruntime as ort
from train import CREDIT_FEATURES

ROOT = pathlib.Path(__file__).resolve().parent
MODEL = ROOT / "repository/credit_risk/1/model.onnx"
INVERTED = ROOT / "test/credit_risk_inverted/1/model.onnx"

# The model's inputs, in the training data's column order.
FEATURES = CREDIT_FEATURES
CLASS = "label"
SCORE = "probabilities[1]"
TOLERANCE = 1e-4
DIRECTION_TOLERANCE = 1e-6
KINDS = ["golden", "invariance", "directional", "minimum"]

BASE = {
    "age": 40,
    "income": 60000,
    "debt_ratio": 0.3,
    "credit_lines": 5,
    "late_payments_90d": 0,
    "utilization": 0.4,
    "months_employed": 120,
    "loan_amount": 20000,
}

# Applicants (overrides of BASE) the invariance and directional cases start from.
SAFE = {"age": 52, "income": 95000, "debt_ratio": 0.12, "utilization": 0.2, "months_employed": 240, "loan_amount": 15000}
YOUNG_SAFE = {"age": 27, "income": 70000, "debt_ratio": 0.15, "utilization": 0.25, "months_employed": 60}
RISKY = {
    "age": 33,
    "income": 24000,
    "debt_ratio": 0.6,
    "late_payments_90d": 3,
    "utilization": 0.85,
    "months_employed": 12,
    "loan_amount": 18000,
}
MEDIUM = {"age": 35, "income": 38000, "debt_ratio": 0.45, "late_payments_90d": 1, "utilization": 0.6, "loan_amount": 22000}
ONE_LATE = {"late_payments_90d": 1, "debt_ratio": 0.35}
TWO_LATE = {"age": 45, "income": 45000, "late_payments_90d": 2, "utilization": 0.5}


def number(value: float) -> int | float:
    """A feature value as a JSON number: integral values without a fraction."""
    value = float(value)
    return int(value) if value.is_integer() else value


def load_training() -> np.ndarray:
    path = ROOT / "data/credit_risk_train.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header == FEATURES + ["default"], header
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)


def predict(session: ort.InferenceSession, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of default for full rows of features (f64, fed as f32)."""
    feeds = {name: np.array([[row[name]] for row in rows], dtype=np.float64).astype(np.float32) for name in FEATURES}
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return labels, probabilities


def outputs(session: ort.InferenceSession, row: dict) -> dict[str, float]:
    """The named output values of one row: `label` and `probabilities[k]`."""
    labels, probabilities = predict(session, [row])
    named = {CLASS: float(labels[0])}
    for column in range(probabilities.shape[1]):
        named[f"probabilities[{column}]"] = float(probabilities[0, column])
    return named


def start(case: dict) -> dict:
    return {**BASE, **case["inputs"]}


def apply_change(row: dict, change: dict) -> dict:
    changed = dict(row)
    for name, how in change.items():
        if isinstance(how, str):
            operator, operand = how[0], float(how[1:])
            value = float(row[name])
            changed[name] = {"+": value + operand, "-": value - operand, "*": value * operand}[operator]
        else:
            changed[name] = how
    return changed


def applicant(**overrides: float) -> dict:
    return {name: number(value) for name, value in overrides.items()}


def describe(row: np.ndarray) -> str:
    values = dict(zip(FEATURES, row))
    late = int(values["late_payments_90d"])
    return (
        f"age {int(values['age'])}, income {values['income'] / 1000:.0f}k, "
        f"debt ratio {values['debt_ratio']:.2f}, {late} late payment{'s' if late != 1 else ''}, "
        f"loan {values['loan_amount'] / 1000:.0f}k"
    )


GOLDEN_TARGETS = [
    ("low", [0.005, 0.02, 0.04, 0.07]),
    ("medium", [0.25, 0.35, 0.42, 0.6]),
    ("high", [0.7, 0.8, 0.9, 0.96]),
]


def golden_cases(session: ort.InferenceSession, data: np.ndarray) -> list[dict]:
    """Training rows whose probability of default is nearest to each target.
    Rows within 0.02 of the 0.5 threshold are left out, so that an engine's
    rounding cannot flip their label."""
    rows = [dict(zip(FEATURES, row)) for row in data[:, :-1]]
    _, probabilities = predict(session, rows)
    score = probabilities[:, 1].astype(np.float64)
    usable = np.abs(score - 0.5) >= 0.02
    cases = []
    for band, targets in GOLDEN_TARGETS:
        for target in targets:
            distance = np.where(usable, np.abs(score - target), np.inf)
            index = int(np.argmin(distance))
            usable[index] = False
            named = outputs(session, rows[index])
            cases.append(
                {
                    "name": f"{band} risk: {describe(data[index])} (training row {index + 1})",
                    "inputs": {name: number(data[index, k]) for k, name in enumerate(FEATURES)},
                    "expect": {CLASS: int(named[CLASS]), SCORE: round(named[SCORE], 6)},
                }
            )
    base = outputs(session, BASE)
    cases.append(
        {
            "name": "the base applicant",
            "inputs": {},
            "expect": {CLASS: int(base[CLASS]), SCORE: round(base[SCORE], 6)},
            "tolerance": TOLERANCE,
        }
    )
    return cases


def invariance_cases() -> list[dict]:
    cases = [
        ("base applicant a year older", {}, {"age": "+1"}),
        ("base applicant a year younger", {}, {"age": "-1"}),
        ("base applicant with 1% more income", {}, {"income": "*1.01"}),
        ("base applicant employed one more month", {}, {"months_employed": "+1"}),
        ("base applicant with one more credit line", {}, {"credit_lines": "+1"}),
        ("safe applicant with utilization up 0.01", SAFE, {"utilization": "+0.01"}),
        ("safe applicant with 1% less income", SAFE, {"income": "*0.99"}),
        ("safe applicant borrowing 500 more", SAFE, {"loan_amount": "+500"}),
        ("safe applicant with debt ratio up 0.01", SAFE, {"debt_ratio": "+0.01"}),
        ("young safe applicant a year older", YOUNG_SAFE, {"age": "+1"}),
        ("young safe applicant with one credit line fewer", YOUNG_SAFE, {"credit_lines": "-1"}),
        ("risky applicant a year older", RISKY, {"age": "+1"}),
        ("risky applicant with 1% more income", RISKY, {"income": "*1.01"}),
        ("risky applicant employed one more month", RISKY, {"months_employed": "+1"}),
        ("risky applicant with utilization down 0.01", RISKY, {"utilization": "-0.01"}),
        ("risky applicant with one more credit line", RISKY, {"credit_lines": "+1"}),
    ]
    return [{"name": name, "inputs": applicant(**inputs), "change": change} for name, inputs, change in cases]


def directional_cases() -> list[dict]:
    cases = [
        ("a 10k larger loan does not lower the risk", {}, {"loan_amount": "+10000"}, "not_lower"),
        ("a doubled loan raises the risk", MEDIUM, {"loan_amount": "*2"}, "higher"),
        ("a smaller loan does not raise the risk", SAFE, {"loan_amount": "-10000"}, "not_higher"),
        ("one more late payment does not lower the risk", {}, {"late_payments_90d": "+1"}, "not_lower"),
        ("three late payments instead of none raise the risk", {}, {"late_payments_90d": 3}, "higher"),
        ("one late payment fewer does not raise the risk", TWO_LATE, {"late_payments_90d": "-1"}, "not_higher"),
        ("a higher debt ratio does not lower the risk", {}, {"debt_ratio": "+0.2"}, "not_lower"),
        ("a higher debt ratio raises the risk", ONE_LATE, {"debt_ratio": "+0.1"}, "higher"),
        ("a higher utilization does not lower the risk", {}, {"utilization": "+0.3"}, "not_lower"),
        ("a lower utilization lowers the risk", MEDIUM, {"utilization": "-0.3"}, "lower"),
        ("a 50% higher income does not raise the risk", {}, {"income": "*1.5"}, "not_higher"),
        ("a 20k higher income lowers the risk", MEDIUM, {"income": "+20000"}, "lower"),
        ("a 20k lower income does not lower the risk", SAFE, {"income": "-20000"}, "not_lower"),
        ("five more years employed do not raise the risk", {}, {"months_employed": "+60"}, "not_higher"),
        ("a job lost does not lower the risk", TWO_LATE, {"months_employed": 0}, "not_lower"),
        (
            "a late payment and a higher debt ratio together raise the risk",
            MEDIUM,
            {"late_payments_90d": "+1", "debt_ratio": "+0.1"},
            "higher",
        ),
    ]
    return [
        {"name": name, "inputs": applicant(**inputs), "change": change, "expect": expect}
        for name, inputs, change, expect in cases
    ]


SAFE_PROFILE = {"income": 90000, "debt_ratio": 0.1, "late_payments_90d": 0, "utilization": 0.15, "loan_amount": 10000}
RISKY_PROFILE = {"income": 22000, "debt_ratio": 0.65, "late_payments_90d": 3, "utilization": 0.9, "loan_amount": 17000}


def minimum_cases() -> list[dict]:
    """Two obviously safe and two obviously risky applicants per age band."""
    bands = [
        ("age < 30", [23, 28], 24),
        ("30 <= age < 45", [31, 44], 60),
        ("45 <= age < 60", [46, 58], 180),
        ("age >= 60", [61, 72], 300),
    ]
    cases = []
    for band, ages, employed in bands:
        for age in ages:
            safe = {**SAFE_PROFILE, "age": age, "months_employed": employed}
            cases.append({"name": f"safe: steady earner, low debt, age {age}", "slice": band, "inputs": applicant(**safe), "expect": {CLASS: 0}})
        for age in ages:
            risky = {**RISKY_PROFILE, "age": age, "months_employed": 6}
            if age >= 60:
                risky["late_payments_90d"] = 4
            cases.append(
                {
                    "name": f"risky: low income, high debt, {risky['late_payments_90d']} late payments, age {age}",
                    "slice": band,
                    "inputs": applicant(**risky),
                    "expect": {CLASS: 1},
                }
            )
    return cases


def slice_of(age: float) -> str:
    if age < 30:
        return "age < 30"
    if age < 45:
        return "30 <= age < 45"
    if age < 60:
        return "45 <= age < 60"
    return "age >= 60"


def moved(direction: str, before: float, after: float) -> bool:
    return {
        "higher": after > before,
        "lower": after < before,
        "not_lower": after >= before - DIRECTION_TOLERANCE,
        "not_higher": after <= before + DIRECTION_TOLERANCE,
    }[direction]


def failures(session: ort.InferenceSession, suite: dict) -> dict[str, list[str]]:
    """The names of the cases a model fails, per kind."""
    failed: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for case in suite["golden"]:
        got = outputs(session, start(case))
        tolerance = case.get("tolerance", suite["tolerance"])
        if any(abs(got[name] - value) > tolerance for name, value in case["expect"].items()):
            failed["golden"].append(case["name"])
    for case in suite["invariance"]:
        before = outputs(session, start(case))
        after = outputs(session, apply_change(start(case), case["change"]))
        if before[suite["class"]] != after[suite["class"]]:
            failed["invariance"].append(case["name"])
    for case in suite["directional"]:
        before = outputs(session, start(case))
        after = outputs(session, apply_change(start(case), case["change"]))
        if not moved(case["expect"], before[suite["score"]], after[suite["score"]]):
            failed["directional"].append(case["name"])
    for case in suite["minimum"]:
        got = outputs(session, start(case))
        if any(got[name] != value for name, value in case["expect"].items()):
            failed["minimum"].append(case["name"])
    return failed


def check_clear_cut(session: ort.InferenceSession, suite: dict) -> None:
    """Invariance applicants keep 0.25 from the threshold, minimum ones 0.4, and
    each minimum case's age lies in its slice."""
    for case in suite["invariance"]:
        score = outputs(session, start(case))[SCORE]
        assert abs(score - 0.5) >= 0.25, (case["name"], score)
    for case in suite["minimum"]:
        score = outputs(session, start(case))[SCORE]
        assert abs(score - 0.5) >= 0.4, (case["name"], score)
        assert slice_of(start(case)["age"]) == case["slice"], case["name"]


def dependence_signs(session: ort.InferenceSession) -> dict[str, str]:
    """How the probability of default moves when each feature of the base
    applicant grows by a tenth of its value (one unit for the counts)."""
    before = outputs(session, BASE)[SCORE]
    signs = {}
    for name in FEATURES:
        step = 1.0 if name in ("credit_lines", "late_payments_90d") else 0.1 * BASE[name]
        after = outputs(session, apply_change(BASE, {name: f"+{step}"}))[SCORE]
        signs[name] = "up" if after > before else "down" if after < before else "flat"
    return signs


def suite(session: ort.InferenceSession) -> dict:
    return {
        "description": (
            "Behavioural tests of the credit-risk model (CheckList style): golden answers of version 1, "
            "decisions that small irrelevant changes must not flip, domain directions of the probability "
            "of default, and clear-cut applicants per age band. Written by models/suites.py."
        ),
        "class": CLASS,
        "score": SCORE,
        "tolerance": TOLERANCE,
        "min_pass_rate": 1.0,
        "base": BASE,
        "golden": golden_cases(session, load_training()),
        "invariance": invariance_cases(),
        "directional": directional_cases(),
        "minimum": minimum_cases(),
    }


def main() -> None:
    session = ort.InferenceSession(str(MODEL))
    print("probability of default as each feature grows (version 1, base applicant):")
    for name, sign in dependence_signs(session).items():
        print(f"  {name}: {sign}")

    written = suite(session)
    failed = failures(session, written)
    assert not any(failed.values()), failed
    check_clear_cut(session, written)
    assert all(len(written[kind]) >= 12 for kind in KINDS)
    assert len({case["slice"] for case in written["minimum"]}) >= 3

    path = ROOT / "repository/credit_risk/suite.json"
    path.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    counts = ", ".join(f"{len(written[kind])} {kind}" for kind in KINDS)
    print(f"wrote {path.relative_to(ROOT.parent)} ({counts}); version 1 passes every case")

    inverted = failures(ort.InferenceSession(str(INVERTED)), written)
    print("credit_risk_inverted fails:")
    for kind in KINDS:
        print(f"  {kind}: {len(inverted[kind])} of {len(written[kind])}")
    assert inverted["golden"] and inverted["directional"], inverted


if __name__ == "__main__":
    main()
